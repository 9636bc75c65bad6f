"""Batched MuJoCo physics: B simulations of one model stepped in C++ threads, their state as
NumPy arrays (the physics layer under the batched locomotion families, envs/locomotion.py).

``load_model`` compiles gymnasium's XML files without MuJoCo 4's deprecation warning; the
models are bit for bit the compiled ones, so the single environments (which subclass gymnasium's)
and the batches step the same physics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np
from mujoco import batch as mujoco_batch

from metarl_cli.core.checks import check_integer, check_positive


def load_model(xml_path: str) -> mujoco.MjModel:
    """The model of ``xml_path``, equal in every field to what MuJoCo compiles from it, without
    the compiler attribute ``settotalmass`` that MuJoCo 4 deprecates.

    Gymnasium's half_cheetah.xml sets it; compiling it prints a deprecation warning and writes
    MUJOCO_LOG.TXT into the working directory on every run. Instead the masses are scaled after
    compiling, as the compiler does: ``mj_setTotalmass``, ``mj_setConst``, and the two mean
    statistics taken from the masses (``meaninertia`` scales the solver's tolerance). Sums run in
    MuJoCo's order, so the model is bit for bit the compiled one (tested).
    """
    xml = Path(xml_path).read_text()
    found = re.search(r'\s*settotalmass="([^"]*)"', xml)
    if found is None:
        return mujoco.MjModel.from_xml_path(xml_path)
    model = mujoco.MjModel.from_xml_string(xml.replace(found.group(0), "", 1))
    mujoco.mj_setTotalmass(model, float(found.group(1)))
    mujoco.mj_setConst(model, mujoco.MjData(model))
    mass = inertia = 0.0
    for value in model.body_mass[1:]:
        mass += float(value)
    for value in model.dof_M0:
        inertia += float(value)
    model.stat.meanmass = mass / (model.nbody - 1)
    model.stat.meaninertia = inertia / model.nv
    return model


class MujocoBatch:
    """B simulations of one model, stepped by MuJoCo's batch module, their state as arrays.

    ``mujoco.batch.Batch`` steps the simulations on a pool of C++ threads with no Python per
    environment, bit-identical to a loop over one ``MjData`` each at any thread count. ``qpos``
    (B, nq) and ``qvel`` (B, nv) are live views of the simulations' states; ``xpos`` (B, nbody,
    3; (B, 0, 3) when not asked for) is refreshed by each call, as ``MjData.xpos`` is by
    ``mj_step``, and so is ``subtree_com`` (B, nbody, 3; (B, 0, 3) unless ``com``);
    ``cfrc_ext`` (B, nbody, 6; (B, 0, 6) without contacts) is filled after each step. With
    ``com_velocity`` each step ends with the position and velocity stages at the new state (as
    ``mj_step1`` computes them), and ``cvel`` (B, nbody, 6) and ``xipos`` (B, nbody, 3) are
    bound beside ``subtree_com``, all of them the new state's. Read them before the next call,
    or copy them.

    ``fields`` names further outputs to bind (e.g. ``cinert``, ``qfrc_actuator``), each an
    attribute of that name, (B, ...) as ``MjData`` shapes it and refreshed by each call.

    Gymnasium's Ant computes the contact forces with ``mj_rnePostConstraint`` after ``mj_step``,
    from the data the last Runge-Kutta stage left; the batch does not, so a family with contacts
    keeps one ``MjData`` per simulation (``persistent``) and makes that call on a copy of each.
    """

    def __init__(self, xml_path: str, frame_skip: int, contacts: bool,
                 num_threads: int | None = None, body_positions: bool = True,
                 com: bool = False, com_velocity: bool = False,
                 fields: Sequence[str] = ()) -> None:
        check_positive(frame_skip=frame_skip)
        self.model = load_model(xml_path)
        template = mujoco.MjData(self.model)
        self._fields = {name: getattr(template, name).shape for name in fields}
        self.frame_skip = frame_skip
        self.contacts = contacts
        self.body_positions = body_positions
        self.com = com or com_velocity
        self.com_velocity = com_velocity
        self.num_threads = _num_threads(num_threads)
        self._scratch = mujoco.MjData(self.model) if contacts else None
        self._batch: mujoco_batch.Batch | None = None
        self.resize(0)

    def resize(self, batch_size: int) -> None:
        """Make ``batch_size`` simulations (their states are set by the next reset)."""
        m = self.model
        self.close()
        self.qpos, self.qvel = np.zeros((batch_size, m.nq)), np.zeros((batch_size, m.nv))
        self.xpos = np.zeros((batch_size, 0, 3))
        self.subtree_com = np.zeros((batch_size, 0, 3))
        self.cvel, self.xipos = np.zeros((batch_size, 0, 6)), np.zeros((batch_size, 0, 3))
        self.cfrc_ext = np.zeros((batch_size, m.nbody if self.contacts else 0, 6))
        for name, shape in self._fields.items():
            setattr(self, name, np.zeros((batch_size, *shape)))
        if batch_size == 0:
            return
        batch = mujoco_batch.Batch(m, batch_size, self.num_threads, persistent=self.contacts)
        self.qpos, self.qvel = batch.bind("qpos"), batch.bind("qvel")
        self._ctrl = batch.bind("ctrl")
        if self.body_positions:
            self.xpos = batch.bind("xpos")
        if self.com:
            self.subtree_com = batch.bind("subtree_com")
        if self.com_velocity:
            self.cvel, self.xipos = batch.bind("cvel"), batch.bind("xipos")
        for name in self._fields:
            setattr(self, name, batch.bind(name))
        self._batch = batch

    def reset(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Reset every simulation as gymnasium does: mj_resetData, set qpos/qvel, mj_forward."""
        batch = self._require_batch()
        batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.qpos[:] = qpos
        self.qvel[:] = qvel
        batch.forward()
        self.cfrc_ext[:] = 0.0  # as mj_resetData left them: only mj_rnePostConstraint sets them

    def step(self, ctrl: np.ndarray, active: np.ndarray | None = None) -> None:
        """Write ``ctrl`` (B, nu) and advance the simulations by ``frame_skip`` physics steps:
        all of them, or those where the bool (B,) ``active`` is True. The others keep their
        state, and their rows of the derived arrays are stale."""
        batch = self._require_batch()
        self._ctrl[:] = ctrl
        stage = mujoco.mjtStage.mjSTAGE_VEL if self.com_velocity else mujoco.mjtStage.mjSTAGE_NONE
        ids = None if active is None or active.all() else np.flatnonzero(active).astype(np.int32)
        batch.step(ids=ids, nstep=self.frame_skip, stage=stage)
        if self._scratch is not None:  # gymnasium computes cfrc_ext after every step
            m, d = self.model, self._scratch
            for i in range(batch.nsim) if ids is None else ids:
                batch.get_data(i, d)
                mujoco.mj_rnePostConstraint(m, d)
                self.cfrc_ext[i] = d.cfrc_ext

    def set_model_field(self, name: str, values: np.ndarray) -> None:
        """Give model field ``name`` (as ``MjModel`` names it) its own value in each
        simulation, ``values`` (B, ...) in the field's shape, until the next ``resize``. No
        constants are recomputed from it (no ``mj_setConst``), as writing ``MjModel`` does not.
        Refused with contacts: their forces are computed with the shared ``model``."""
        if self.contacts:
            raise NotImplementedError("per-simulation model fields with contact forces")
        self._require_batch().expand(name)[:] = values

    @property
    def size(self) -> int:
        """The number of simulations (0 after ``close``)."""
        return 0 if self._batch is None else self._batch.nsim

    def close(self) -> None:
        """Let the simulations and their threads go (``resize`` makes new ones)."""
        self._batch = None

    def _require_batch(self) -> mujoco_batch.Batch:
        if self._batch is None:
            raise RuntimeError("resize the batch to at least one simulation first")
        return self._batch


def _num_threads(num_threads: int | None) -> int:
    """``num_threads``, an integer >= 1, or all cores for None."""
    check_integer(1, or_none=True, num_threads=num_threads)
    return (os.cpu_count() or 1) if num_threads is None else num_threads
