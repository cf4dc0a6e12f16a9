"""Dashboard logic driven from Python, without a browser: clicks, throttling, errors, frames, exports."""
from __future__ import annotations

import _thread
import shutil
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")
pytest.importorskip("anywidget")

from edwidgets.errors import EdwidgetsError  # noqa: E402
from edwidgets.refine.events import JobState  # noqa: E402
from edwidgets.ui import RefinementDashboard, SimulatedJob, run_blocking  # noqa: E402
from edwidgets.ui.viewer3d import THREEDMOL_ENV, StructureView3D, resolve_3dmol_js  # noqa: E402


def wait_for(predicate, timeout=5.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def dashboard_factory():
    made = []

    def make(job, **kwargs):
        kwargs.setdefault("threedmol_js", "https://example.invalid/3Dmol-min.js")
        d = RefinementDashboard(job, truth=getattr(job, "truth", None), start=getattr(job, "initial", None), **kwargs)
        made.append((d, job))
        return d

    yield make
    for d, job in made:
        d.close()
        if hasattr(job, "close"):
            job.close()


def test_buttons_drive_the_job_and_stop_is_resumable(dashboard_factory):
    job = SimulatedJob(n_epochs=400, epoch_seconds=0.02)
    d = dashboard_factory(job, update_hz=20)
    assert d.controls.pause_button.disabled and not d.controls.start_button.disabled

    d.controls.start_button.click()
    assert job.state is JobState.RUNNING
    assert not d.controls.pause_button.disabled and d.controls.start_button.disabled
    assert wait_for(lambda: d.latest_rendered is not None and d.latest_rendered.epoch >= 3)

    d.controls.pause_button.click()
    assert wait_for(lambda: job.state is JobState.PAUSED)
    paused_epoch = job.latest().epoch
    time.sleep(0.2)
    assert job.latest().epoch == paused_epoch, "epochs advanced while paused"
    assert wait_for(lambda: not d.controls.resume_button.disabled)

    d.controls.resume_button.click()
    assert wait_for(lambda: job.latest().epoch > paused_epoch + 2)

    d.controls.stop_button.click()
    result = job.result(timeout=5)
    assert result.state is JobState.STOPPED and 0 < result.epochs_done < 400
    assert wait_for(lambda: "stopped" in d.status.line.value)
    assert d.controls.start_button.description == "Continue"

    # a stopped job continues from where it stopped
    d.controls.start_button.click()
    assert wait_for(lambda: job.latest().epoch > result.epochs_done)
    job.stop()
    job.result(timeout=5)


def test_burst_of_snapshots_is_throttled_and_rendered_off_the_worker_thread(dashboard_factory, monkeypatch):
    job = SimulatedJob(n_epochs=300, epoch_seconds=0.0)
    d = dashboard_factory(job, update_hz=5)
    threads = set()
    original = d.r_curves.update

    def spy(snap):
        threads.add(threading.current_thread().name)
        original(snap)

    monkeypatch.setattr(d.r_curves, "update", spy)
    tic = time.monotonic()
    run_blocking(job, d)
    elapsed = time.monotonic() - tic
    assert d.snapshots_received >= 300
    # 5 Hz: one render per 0.2 s at most, plus the first one and the final flush
    assert d.render_count <= 2 + elapsed * 5 + 1, (d.render_count, elapsed)
    assert d.render_count < d.snapshots_received / 10
    assert d.latest_rendered.epoch == 300 and d.r_curves.n_points == 300
    assert not any(name.startswith("edwidgets-simjob") for name in threads), threads


def test_worker_error_appears_in_the_status_line(dashboard_factory):
    job = SimulatedJob(n_epochs=50, epoch_seconds=0.01, fail_at_epoch=4)
    d = dashboard_factory(job, update_hz=20)
    d.start()
    with pytest.raises(RuntimeError, match="simulated failure"):
        job.result(timeout=5)
    assert wait_for(lambda: d.status.error_text is not None)
    assert "simulated failure in epoch 4" in d.status.error_text
    assert "simulated failure" in d.status.error.value
    assert wait_for(lambda: "failed" in d.status.line.value)
    assert d.controls.start_button.disabled


def test_invalid_action_is_reported_not_raised(dashboard_factory):
    job = SimulatedJob(n_epochs=100, epoch_seconds=0.02)
    d = dashboard_factory(job)
    d.start()
    d.start()  # already running: the job refuses, the dashboard shows why
    assert d.status.error_text is not None and "cannot start" in d.status.error_text
    job.stop()
    job.result(timeout=5)


def test_settings_reach_the_job_or_are_stored(dashboard_factory):
    job = SimulatedJob(n_epochs=100, epoch_seconds=0.01)
    d = dashboard_factory(job)
    d.controls.epochs.value = 7
    d.controls.learning_rate.value = 0.05
    d.controls.group_boxes["adp"].value = False
    d.controls.start_button.click()
    job.result(timeout=5)
    assert job.n_epochs == 7 and job.learning_rate == pytest.approx(0.05)
    assert job.refine_groups["adp"] is False and job.refine_groups["positions"] is True
    assert job.latest().epoch == 7
    # ADPs frozen: U stays at the start value
    start_u = [a.u_iso for a in job.initial.atoms]
    assert [a.u_iso for a in job.latest().atoms] == pytest.approx(start_u)

    class NoSetters:
        """A job without configure(): the dashboard keeps the settings for it."""

        state = JobState.IDLE

        def __init__(self):
            self.started = False

        def start(self):
            self.started = True

        def pause(self): ...
        def resume(self): ...
        def stop(self): ...

        def subscribe(self, listener):
            return lambda: None

        def latest(self):
            return None

        def frame_pattern(self, frame):
            raise EdwidgetsError("no frames")

        def result(self, timeout=None):
            return None

    bare = NoSetters()
    d2 = dashboard_factory(bare)
    d2.controls.epochs.value = 12
    d2.controls.start_button.click()
    assert bare.started and d2.pending_settings["n_epochs"] == 12
    assert set(d2.pending_settings["refine"]) == {"positions", "adp", "thickness", "scale"}


def test_frame_slider_changes_the_plotted_frame(dashboard_factory):
    job = SimulatedJob(n_epochs=3, epoch_seconds=0.0, n_frames=12)
    d = dashboard_factory(job)
    run_blocking(job, d)
    assert d.pattern.slider.max == 11
    d.pattern.slider.value = 5
    p5 = d.pattern.pattern
    assert p5.frame == 5 and "frame 5</b>" in d.pattern.info.value
    assert np.allclose(d.pattern.spots.data[0].x, p5.x) and np.allclose(d.pattern.spots.data[1].y, p5.y)
    d.pattern.slider.value = 9
    p9 = d.pattern.pattern
    assert p9.frame == 9 and p9.angle_deg != p5.angle_deg
    assert np.allclose(d.pattern.spots.data[0].x, p9.x)
    assert f"{p9.angle_deg:+.2f}°" in d.pattern.info.value


def test_views_show_start_current_truth_and_thickness_curves(dashboard_factory):
    job = SimulatedJob(n_epochs=5, epoch_seconds=0.0, n_frames=10)
    d = dashboard_factory(job)
    run_blocking(job, d)
    roles = [m["name"] for m in d.structure.view.models]
    assert roles == ["truth", "start", "current"]
    assert len(d.structure.view.cell_edges) == 12
    names = [t.name for t in d.thickness.figure.data]
    assert names == ["grid search", "start", "truth", "current"]
    assert all(len(t.y) == 10 for t in d.thickness.figure.data)
    assert np.allclose(d.thickness.figure.data[3].y, job.latest().thickness)
    assert "Si1" in d.parameters.table.value and "Δ truth" in d.parameters.table.value


def test_exports_write_files(dashboard_factory, tmp_path):
    job = SimulatedJob(n_epochs=4, epoch_seconds=0.0, n_frames=8)
    d = dashboard_factory(job)
    run_blocking(job, d)
    written = d.export(tmp_path / "out", include_plotlyjs="cdn")
    for name in ("r_curves.html", "thickness.html", "per_frame.csv", "atoms.csv", "refined.cif"):
        assert written[name].is_file(), name
    import pandas as pd

    table = pd.read_csv(written["per_frame.csv"])
    assert len(table) == 8 and list(table.columns) == ["frame", "angle_deg", "thickness_A", "r_frame", "scale"]
    cif = written["refined.cif"].read_text()
    assert "_atom_site_fract_x" in cif and "Si1 Si" in cif
    assert "plotly" in written["r_curves.html"].read_text()[:20000].lower()


def test_cif_export_waits_for_a_finished_job(dashboard_factory, tmp_path):
    from edwidgets.ui.export import ExportUnavailable, write_refined_cif

    job = SimulatedJob(n_epochs=500, epoch_seconds=0.02)
    dashboard_factory(job)
    job.start()
    with pytest.raises(ExportUnavailable, match="still running"):
        write_refined_cif(job, tmp_path / "x.cif")
    job.stop()
    job.result(timeout=5)
    assert write_refined_cif(job, tmp_path / "x.cif").is_file()


@pytest.mark.slow
def test_png_export_with_kaleido(dashboard_factory, tmp_path):
    pytest.importorskip("kaleido")
    if not (shutil.which("chromium") or shutil.which("google-chrome")):
        pytest.skip("kaleido needs a Chromium (apt-get install chromium)")
    job = SimulatedJob(n_epochs=3, epoch_seconds=0.0)
    d = dashboard_factory(job)
    run_blocking(job, d)
    from edwidgets.ui.export import export_figure

    path = export_figure(d.r_curves.figure, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_run_blocking_interrupt_stops_and_returns_partial_result(dashboard_factory):
    # A process started in the background by a non-interactive shell (as CI runners do) inherits
    # SIGINT ignored, and then interrupt_main() does nothing; a kernel installs Python's handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupted_run_blocking(dashboard_factory)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_run_blocking(dashboard_factory):
    job = SimulatedJob(n_epochs=1000, epoch_seconds=0.01)
    d = dashboard_factory(job)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        result = run_blocking(job, d)
    finally:
        timer.cancel()
    assert result.state is JobState.STOPPED
    assert 0 < result.epochs_done < 1000
    assert d.latest_rendered.state is JobState.STOPPED


def test_3dmol_source_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(THREEDMOL_ENV, raising=False)
    url, source = resolve_3dmol_js()
    assert url.startswith("https://") and url.endswith("3Dmol-min.js") and source == ""
    fake = tmp_path / "3Dmol-min.js"
    fake.write_text("/* 3Dmol stand-in */ window.$3Dmol = {createViewer(){}};")
    monkeypatch.setenv(THREEDMOL_ENV, str(fake))
    url, source = resolve_3dmol_js()
    assert url == "" and "$3Dmol" in source
    view = StructureView3D()
    assert view.js_source == source and view.js_url == ""
    with pytest.raises(EdwidgetsError, match="not found"):
        resolve_3dmol_js(tmp_path / "missing.js")
    not_js = tmp_path / "other.js"
    not_js.write_text("console.log('hello')")
    with pytest.raises(EdwidgetsError, match="does not look like"):
        resolve_3dmol_js(not_js)
    assert resolve_3dmol_js("https://x.org/3Dmol.js") == ("https://x.org/3Dmol.js", "")


def test_reference_coercion_rejects_bad_input():
    from edwidgets.ui.reference import as_reference, fractional_to_cartesian_matrix

    with pytest.raises(EdwidgetsError, match="unknown keys"):
        as_reference({"atomz": []}, "truth")
    with pytest.raises(EdwidgetsError, match="must be a ReferenceModel"):
        as_reference(42, "truth")
    # hexagonal cell: |a| = |b| = a, angle(a, b) = 120°, c along z
    m = fractional_to_cartesian_matrix((4.9, 4.9, 5.4, 90, 90, 120))
    a, b, c = m[:, 0], m[:, 1], m[:, 2]
    assert np.linalg.norm(a) == pytest.approx(4.9) and np.linalg.norm(b) == pytest.approx(4.9)
    assert np.degrees(np.arccos(a @ b / 4.9**2)) == pytest.approx(120)
    assert c == pytest.approx([0, 0, 5.4])


@pytest.mark.slow
def test_dashboard_on_the_real_refinement_job(dashboard_factory, tmp_path):
    """The same dashboard on the real RefinementJob (tiny synthetic quartz) instead of the fake."""
    try:
        from edwidgets.experiment.forward import ForwardModel
        from edwidgets.refine.demo import demo_crystal, grid_search_thickness, smooth_profile, synthetic_rotation_experiment
        from edwidgets.refine.job import RefinementJob
        from edwidgets.refine.model import RefinementModel, make_thickness_model
    except ImportError as exc:
        pytest.skip(f"refinement engine not available: {exc}")
    truth = demo_crystal()
    exp, _info = synthetic_rotation_experiment(truth, 4, thickness=smooth_profile, g_max=0.9, noise=True, sg_centre=0.012, n_samples=2, seed=1)
    start = truth.perturbed(0.1, seed=7)
    forward = ForwardModel(exp, start, g_max=0.9, sg_max=0.012, n_samples=2, selection=None)
    t_grid = grid_search_thickness(forward, start, np.arange(300.0, 1000.0, 100.0))
    model = RefinementModel(start, exp.frame_angle_deg, thickness_model=make_thickness_model("nn", exp.frame_angle_deg, t_grid, seed=0, fit_steps=5))
    job = RefinementJob(forward, model, n_epochs=4, lr=2e-3, threads=1, uncertainties=False)
    d = dashboard_factory(job)
    assert d.controls.learning_rate.value == pytest.approx(2e-3)
    d.controls.epochs.value = 3
    result = run_blocking(job, d)
    assert job.state is JobState.FINISHED and d.latest_rendered.epoch == 3
    assert d.r_curves.n_points == 3 and d.pattern.slider.max == 3
    d.pattern.slider.value = 2
    assert d.pattern.pattern.frame == 2 and len(d.pattern.spots.data[0].x) > 0
    written = d.export(tmp_path, include_plotlyjs="cdn")
    assert "refined.cif" in written and "_atom_site" in written["refined.cif"].read_text()
    assert result is not None


def test_unchanged_learning_rate_keeps_the_jobs_per_group_rates(dashboard_factory):
    """Start with the learning-rate box untouched must not flatten a real job's per-group ``lrs``."""
    received = []

    class Job(SimulatedJob):
        lr = 3e-3

        def configure(self, settings):
            received.append(dict(settings))
            super().configure(settings)

    job = Job(n_epochs=2, epoch_seconds=0.0, learning_rate=3e-3)
    d = dashboard_factory(job)
    d.controls.start_button.click()
    job.result(timeout=5)
    assert received and "learning_rate" not in received[-1] and received[-1]["n_epochs"] == 2
    d.controls.epochs.value = 4
    d.controls.learning_rate.value = 0.02
    d.controls.start_button.click()
    job.result(timeout=5)
    assert received[-1]["learning_rate"] == pytest.approx(0.02) and job.learning_rate == pytest.approx(0.02)
