"""The real RefinementJob as the dashboard uses it from the UI thread: ``frame_angle_deg`` and
``frame_pattern`` called while the worker is mid-epoch."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edwidgets.experiment.forward import ForwardModel
from edwidgets.refine.demo import demo_crystal, synthetic_rotation_experiment
from edwidgets.refine.events import FramePattern, JobState
from edwidgets.refine.job import RefinementJob
from edwidgets.refine.model import RefinementModel, make_thickness_model

G_MAX = 0.9


@pytest.fixture(scope="module")
def setup():
    truth = demo_crystal()
    exp, _ = synthetic_rotation_experiment(truth, 4, thickness=450.0, g_max=G_MAX, sg_centre=0.012, n_samples=2)
    start = truth.perturbed(0.05, seed=3, isotropic=True)
    forward = ForwardModel(exp, start, g_max=G_MAX, sg_max=0.012, n_samples=2, selection=None)
    return start, exp, forward


def make_job(setup, n_epochs):
    start, exp, forward = setup
    # thickness refined too, so every epoch has a different thickness to tell records apart
    model = RefinementModel(start, exp.frame_angle_deg, anisotropic=False,
                            thickness_model=make_thickness_model("constant", exp.frame_angle_deg, 400.0),
                            refine={"orientation": True})
    return RefinementJob(forward, model, n_epochs=n_epochs, lr=5e-3, threads=1)


def frame_r_obs(p: FramePattern) -> float:
    """R_obs of one frame from the pattern's own numbers (I_o > 3σ, as edwidgets.experiment.residuals)."""
    observed = p.i_obs > 3 * p.sigma
    f_o = np.sqrt(np.clip(p.i_obs[observed], 0, None))
    f_c = np.sqrt(np.clip(p.i_calc[observed], 0, None))
    return float(np.abs(f_o - f_c).sum() / f_o.sum())


def test_frame_angle_deg_is_the_experiments(setup):
    _, exp, _ = setup
    job = make_job(setup, 1)
    angles = job.frame_angle_deg
    assert np.array_equal(angles, exp.frame_angle_deg)
    angles[0] = 99.0  # a copy: the caller cannot change the experiment
    assert job.frame_angle_deg[0] == exp.frame_angle_deg[0]


def test_frame_pattern_does_not_wait_for_a_running_epoch(setup):
    """The worker holds the model lock for a whole epoch (seconds on real data); the UI must not."""
    job = make_job(setup, 3)
    job.frame_pattern(0)  # first call evaluates once (nothing recorded yet)
    got: list[FramePattern] = []
    with job._model_lock:  # what the worker holds during a step
        caller = threading.Thread(target=lambda: got.append(job.frame_pattern(1)), daemon=True)
        caller.start()
        caller.join(timeout=5.0)
        returned_while_locked = bool(got)
    caller.join(timeout=30)
    assert returned_while_locked, "frame_pattern blocked on the model lock held by the worker"
    assert got[0].frame == 1 and len(got[0].h) == len(got[0].i_calc) > 0


def test_frame_pattern_from_another_thread_while_running(setup):
    """Hammer frame_pattern from a UI-like thread during a refinement: every pattern is one
    consistent evaluation (its R, thickness and I_calc belong together) and the trajectory is the
    same as without the calls."""
    n_epochs = 12
    quiet = make_job(setup, n_epochs)
    quiet.run()

    job = make_job(setup, n_epochs)
    thicknesses: set[float] = set()
    job.subscribe(lambda s: thicknesses.update(np.round(s.thickness, 9).tolist()))
    patterns: list[FramePattern] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def ui_thread():
        frame = 0
        while not stop.is_set():
            try:
                patterns.append(job.frame_pattern(frame % job.forward.experiment.n_frames))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            frame += 1
            time.sleep(0.001)

    caller = threading.Thread(target=ui_thread, daemon=True)
    job.start()
    caller.start()
    result = job.result(timeout=120)
    stop.set()
    caller.join(timeout=10)
    assert not errors, errors[:3]
    assert job.state is JobState.FINISHED and result.epochs == n_epochs
    assert len(patterns) > n_epochs  # many calls landed while epochs were running
    for p in patterns:
        assert len(p.h) == len(p.i_obs) == len(p.i_calc) == len(p.x)
        assert np.all(np.isfinite(p.i_calc))
        assert p.r_frame == pytest.approx(frame_r_obs(p), rel=1e-9, abs=1e-12)
        assert round(p.thickness, 9) in thicknesses or not thicknesses
        assert np.allclose(p.orientation @ p.orientation.T, np.eye(3), atol=1e-10)
    seen = {round(p.thickness, 9) for p in patterns}
    assert len(seen) > 1  # the patterns followed the refinement
    # the calls did not disturb the worker: same trajectory as the undisturbed job
    assert np.array_equal(np.asarray(job.history["wR_all"]), np.asarray(quiet.history["wR_all"]))
    job.close()
    quiet.close()
