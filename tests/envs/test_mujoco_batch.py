"""The batched physics layer: models compiled as MuJoCo compiles them, without its warning.

(Its stepping is checked through the families in test_locomotion.py and test_rand_params.py:
batched equals single.)"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from metarl_cli.envs.mujoco_batch import MujocoBatch, load_model


@pytest.mark.parametrize("xml", ["half_cheetah.xml", "ant.xml"])
def test_models_are_mujocos_compiled_ones_without_its_warning(
        xml: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to MUJOCO_LOG.TXT here
    path = str(Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / xml)
    ours = load_model(path)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    compiled = mujoco.MjModel.from_xml_path(path)  # half_cheetah.xml: settotalmass, a warning
    compared = 0
    for part in (None, "opt", "stat"):
        owner_a, owner_b = (ours, compiled) if part is None else (
            getattr(ours, part), getattr(compiled, part))
        for name in dir(owner_b):
            value = getattr(owner_b, name)
            if not name.startswith("_") and isinstance(value, np.ndarray | float | int):
                np.testing.assert_array_equal(getattr(owner_a, name), value, err_msg=name)
                compared += 1
    assert compared > 400


def test_per_simulation_fields_are_refused_where_contact_forces_use_the_shared_model() -> None:
    path = str(Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / "ant.xml")
    batch = MujocoBatch(path, frame_skip=5, contacts=True, num_threads=1)
    batch.resize(2)
    with pytest.raises(NotImplementedError, match="contact forces"):
        batch.set_model_field("body_mass", np.ones((2, batch.model.nbody)))


def test_an_inactive_simulation_keeps_its_state_and_the_active_ones_step_as_in_a_full_batch(
        ) -> None:
    path = str(Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / "ant.xml")
    rng = np.random.default_rng(0)
    batches = [MujocoBatch(path, frame_skip=5, contacts=True, num_threads=2) for _ in range(2)]
    qpos0 = batches[0].model.qpos0 + rng.normal(scale=0.1, size=(6, batches[0].model.nq))
    qvel0 = rng.normal(scale=0.1, size=(6, batches[0].model.nv))
    for batch in batches:
        batch.resize(6)
        batch.reset(qpos0, qvel0)
    active = np.array([True, False, True, True, False, True])
    for _ in range(3):
        ctrl = rng.uniform(-1, 1, size=(6, batches[0].model.nu))
        before = batches[1].qpos.copy()
        batches[0].step(ctrl)
        batches[1].step(ctrl, active)
        np.testing.assert_array_equal(batches[1].qpos[~active], before[~active])
        for name in ("qpos", "qvel", "cfrc_ext"):
            np.testing.assert_array_equal(getattr(batches[1], name)[active],
                                          getattr(batches[0], name)[active], err_msg=name)
