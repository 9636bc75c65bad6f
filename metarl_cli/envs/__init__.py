"""Task families, registered as gymnasium ids so they can be used outside the runner."""

import gymnasium as gym

_REGISTRY = {
    "metarl/PointNav-v0": ("metarl_cli.envs.point_nav:PointNavEnv", 100),
    "metarl/HalfCheetahVel-v0": ("metarl_cli.envs.locomotion:HalfCheetahVelEnv", 200),
    "metarl/HalfCheetahDir-v0": ("metarl_cli.envs.locomotion:HalfCheetahDirEnv", 200),
    "metarl/AntVel-v0": ("metarl_cli.envs.locomotion:AntVelEnv", 200),
    "metarl/AntDir-v0": ("metarl_cli.envs.locomotion:AntDirEnv", 200),
    "metarl/AntGoal-v0": ("metarl_cli.envs.locomotion:AntGoalEnv", 200),
    "metarl/HumanoidDir-v0": ("metarl_cli.envs.humanoid:HumanoidDirEnv", 200),
    "metarl/Walker2dRandParams-v0": ("metarl_cli.envs.rand_params:Walker2dRandParamsEnv", 200),
    "metarl/HopperRandParams-v0": ("metarl_cli.envs.rand_params:HopperRandParamsEnv", 200),
    "metarl/PointRobot-v0": ("metarl_cli.envs.point_robot:PointRobotEnv", 20),
    "metarl/PointRobotSparse-v0": ("metarl_cli.envs.point_robot:PointRobotSparseEnv", 20),
    "metarl/BernoulliBandit-v0": ("metarl_cli.envs.bandits:BernoulliBanditEnv", 100),
    "metarl/TabularMDP-v0": ("metarl_cli.envs.tabular_mdp:TabularMDPEnv", 10),
}

for _env_id, (_entry_point, _horizon) in _REGISTRY.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_horizon)
