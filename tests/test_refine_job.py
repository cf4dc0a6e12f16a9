"""Refinement engine on a tiny exact synthetic dataset (truth reachable by construction)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from edwidgets.crystal import asu_rmsd
from edwidgets.errors import EdwidgetsError
from edwidgets.experiment.forward import ForwardModel
from edwidgets.refine.demo import demo_crystal, synthetic_rotation_experiment
from edwidgets.refine.events import FramePattern, JobState, Snapshot
from edwidgets.refine.job import RefinementJob
from edwidgets.refine.model import RefinementError, RefinementModel, make_thickness_model

G_MAX = 1.0
T_TRUE = 400.0


@pytest.fixture(scope="module")
def setup():
    truth = demo_crystal()
    exp, info = synthetic_rotation_experiment(truth, 5, thickness=T_TRUE, g_max=G_MAX, sg_centre=0.012)
    start = truth.perturbed(0.05, seed=3, isotropic=True)
    forward = ForwardModel(exp, start, g_max=G_MAX, sg_max=0.012, n_samples=3, selection=None)
    return truth, start, exp, forward


def make_job(setup, kind="constant", t_init=T_TRUE, **kw):
    truth, start, exp, forward = setup
    thickness = make_thickness_model(kind, exp.frame_angle_deg, t_init, seed=0)
    model = RefinementModel(start, exp.frame_angle_deg, thickness_model=thickness, anisotropic=False,
                            refine=kw.pop("refine", None))
    kw.setdefault("threads", 1)  # frames already run on one thread per core
    return RefinementJob(forward, model, **kw)


def test_refinement_lowers_wr_and_moves_towards_truth(setup):
    truth, start, _, _ = setup
    job = make_job(setup, n_epochs=40, lr=3e-3, refine={"thickness": False})
    result = job.run()
    hist = result.history["wR_all"]
    assert result.state == "finished" and result.epochs == 40
    assert result.wr_all < 0.5 * hist[0]
    assert result.wr_all <= hist.min() + 1e-15  # best epoch kept
    assert asu_rmsd(truth, result.crystal) < asu_rmsd(truth, start)
    snap = job.latest()
    assert snap.state is JobState.FINISHED and snap.epoch == 40
    assert len(snap.history["wR_all"]) == 40


def test_checkpoint_resume_reproduces_trajectory(setup, tmp_path):
    straight = make_job(setup, kind="nn", n_epochs=6, lr=2e-3)
    straight.run()
    first = make_job(setup, kind="nn", n_epochs=3, lr=2e-3)
    first.run()
    path = first.save_checkpoint(tmp_path / "ck.pt")
    _, start, exp, forward = setup
    fresh = RefinementModel(start, exp.frame_angle_deg, anisotropic=False,
                            thickness_model=make_thickness_model("nn", exp.frame_angle_deg, 900.0, seed=5))
    resumed = RefinementJob.from_checkpoint(path, forward, fresh, n_epochs=6)
    assert resumed.epoch == 3 and resumed.state is JobState.STOPPED
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-12), key
    assert np.allclose(straight.history["wR_all"], resumed.history["wR_all"], rtol=0, atol=1e-13)
    assert resumed.current_result().best_epoch == straight.current_result().best_epoch


def test_background_pause_resume_stop_and_snapshots(setup):
    job = make_job(setup, n_epochs=500, lr=1e-3)
    snaps: list[Snapshot] = []
    got_one = threading.Event()

    def listener(s):
        snaps.append(s)
        got_one.set()

    unsubscribe = job.subscribe(listener)
    job.start()
    assert got_one.wait(30)
    job.pause()
    deadline = time.time() + 10
    while job.state is not JobState.PAUSED and time.time() < deadline:
        time.sleep(0.01)
    assert job.state is JobState.PAUSED
    paused_at = job.epoch
    time.sleep(0.2)
    assert job.epoch == paused_at
    job.resume()
    time.sleep(0.2)
    job.stop()
    result = job.result(timeout=30)
    unsubscribe()
    assert job.state is JobState.STOPPED and result.state == "stopped"
    assert 0 < result.epochs < 500
    s = snaps[0]
    assert isinstance(s.thickness, np.ndarray) and s.thickness.shape == (5,)
    assert s.n_all > 0 and 0 < s.wr_all < 1 and set(s.max_shift) >= {"positions", "adp"}
    assert s.atoms[0].label == "Si1" and len(s.atoms[0].frac) == 3
    assert any(x.state is JobState.PAUSED for x in snaps)
    assert snaps[-1].state is JobState.STOPPED
    pattern = job.frame_pattern(2)
    assert isinstance(pattern, FramePattern) and len(pattern.h) == len(pattern.i_calc) > 0
    assert abs(pattern.thickness - job.latest().thickness[2]) < 1e-9 and pattern.frame == 2
    # resumable after stop
    job.configure({"n_epochs": result.epochs + 2})
    assert job.run().epochs == result.epochs + 2


def test_failing_worker_keeps_best_result(setup):
    job = make_job(setup, n_epochs=10, lr=1e-3)
    evaluate = job.objective.evaluate
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated failure in the forward model")
        return evaluate()

    job.objective.evaluate = flaky
    job.start()
    with pytest.raises(RuntimeError, match="simulated failure") as info:
        job.result(timeout=30)
    assert job.state is JobState.FAILED
    assert "simulated failure" in job.latest().error and job.latest().state is JobState.FAILED
    partial = info.value.partial_result
    assert partial.epochs == 3 and np.isfinite(partial.wr_all)
    with pytest.raises(EdwidgetsError):
        job.start()


def test_frozen_groups_and_kinematic_mode(setup):
    job = make_job(setup, kind="kinematic", n_epochs=4, lr=1e-2, refine={"positions": False, "thickness": False})
    before = job.model.asu.positions.detach().clone()
    adp_before = job.model.asu.adp.detach().clone()
    job.run()
    assert torch.equal(job.model.asu.positions.detach(), before)
    assert not torch.equal(job.model.asu.adp.detach(), adp_before)
    assert np.allclose(job.latest().thickness, 10.0)
    assert job.model.refined_groups() == {"positions": False, "adp": True, "thickness": False, "orientation": False}


def test_validation_frames_and_early_stopping(setup):
    job = make_job(setup, n_epochs=30, lr=0.05, validation_frames=[4], patience=2, optimizer="adamw")
    result = job.run()
    assert result.wr_validation is not None
    assert np.isfinite(job.history["wR_val"]).all()
    assert result.state == "finished"


def test_lbfgs_and_orientation_group(setup):
    job = make_job(setup, n_epochs=3, optimizer="lbfgs", refine={"orientation": True})
    result = job.run()
    assert result.wr_all < result.history["wR_all"][0]
    assert job.model.orientation.abs().max() > 0


def test_bad_settings_raise_clear_errors(setup):
    with pytest.raises(EdwidgetsError, match="unknown optimizer"):
        make_job(setup, optimizer="sgd")
    with pytest.raises(EdwidgetsError, match="learning rate"):
        make_job(setup, lr=-1.0)
    job = make_job(setup, n_epochs=2)
    with pytest.raises(RefinementError, match="unknown parameter groups"):
        job.configure({"refine": {"spin": True}})
    with pytest.raises(EdwidgetsError, match="no such checkpoint"):
        job.resume_from("/nonexistent/ck.pt")
    with pytest.raises(EdwidgetsError, match="unknown thickness model"):
        make_thickness_model("cubic", [0.0, 1.0])
    with pytest.raises(EdwidgetsError, match="validation"):
        make_job(setup, validation_frames=[0, 1, 2, 3, 4])


def job_and_first_evaluation(setup, loss: str, n_epochs: int):
    """A job refining ``loss``, the objective's evaluation at its start, and its observations."""
    job = make_job(setup, n_epochs=n_epochs, lr=3e-3, loss=loss)
    with torch.no_grad():
        ev = job.objective.evaluate()
    return job, ev, job.objective.obs


def test_frame_mean_loss_is_the_mean_of_the_frames_own_wr(setup):
    """The paper averages the loss over rotations: each frame's wR (own scale), then the mean."""
    job, ev, obs = job_and_first_evaluation(setup, "frame_mean", n_epochs=5)
    w, i_o = obs.weight.numpy(), obs.i_obs.numpy()
    i_c, frames = ev.i_calc.numpy(), obs.frame_index.numpy()
    per_frame = [np.sqrt(np.sum((w[m] * (i_o[m] - i_c[m])) ** 2) / np.sum((w[m] * i_o[m]) ** 2))
                 for m in (frames == f for f in np.unique(frames))]
    assert float(ev.loss) == pytest.approx(np.mean(per_frame), rel=1e-12)
    overall = np.sqrt(np.sum((w * (i_o - i_c)) ** 2) / np.sum((w * i_o) ** 2))
    assert abs(float(ev.loss) - overall) > 1e-4 * overall  # a different objective from wR_all
    result = job.run()
    assert job.best["score"] < float(ev.loss)  # best epoch chosen on this loss
    assert result.settings["loss"] == "frame_mean"
    with pytest.raises(EdwidgetsError, match="unknown loss"):
        make_job(setup, loss="chi2")


def test_wr2_loss_uses_sigma_weights_for_loss_and_scales(setup):
    """loss="wr2": Σ((I_o − k I_c)/σ)² / Σ(I_o/σ)² with each frame's k the optimum under the same weights."""
    job, ev, obs = job_and_first_evaluation(setup, "wr2", n_epochs=4)
    sigma, i_o = obs.sigma_i.numpy(), obs.i_measured.numpy()
    i_u, frames = ev.i_unscaled.numpy(), obs.frame_index.numpy()
    i_c = np.empty_like(i_u)
    for f in np.unique(frames):
        m = frames == f
        k = np.sum(i_o[m] * i_u[m] / sigma[m] ** 2) / np.sum(i_u[m] ** 2 / sigma[m] ** 2)
        i_c[m] = k * i_u[m]
    np.testing.assert_allclose(ev.i_calc.numpy(), i_c, rtol=1e-10)
    expected = np.sqrt(np.sum(((i_o - i_c) / sigma) ** 2) / np.sum((i_o / sigma) ** 2))
    assert float(ev.loss) == pytest.approx(expected, rel=1e-12)
    result = job.run()
    assert result.settings["loss"] == "wr2" and job.best["score"] < float(ev.loss)
