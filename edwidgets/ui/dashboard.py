"""The live refinement dashboard.

Threading model: the job's worker thread calls :meth:`RefinementDashboard._enqueue` for every
snapshot; that only stores the newest snapshot and wakes a *pump* thread.  The pump renders at most
``update_hz`` times per second (older pending snapshots are dropped — each carries the whole
history), batching all changes.  Buttons run in the kernel's main thread and only call the job's
``start/pause/resume/stop``, which set events.  Nothing here blocks the kernel.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from edwidgets.refine.events import JobState, RefinementJobLike, Snapshot
from edwidgets.ui.panels import (
    DEFAULT_GROUPS,
    ControlsPanel,
    ParameterTablePanel,
    PatternPanel,
    RCurvePanel,
    StatusPanel,
    StructurePanel,
    ThicknessPanel,
)
from edwidgets.ui.reference import ReferenceModel, as_reference

log = logging.getLogger(__name__)
_TERMINAL = (JobState.FINISHED, JobState.STOPPED, JobState.FAILED)


class RefinementDashboard(widgets.VBox):
    """Watch and steer a refinement job live.

    Parameters
    ----------
    job:
        Anything satisfying :class:`~edwidgets.refine.events.RefinementJobLike`.
    truth, start:
        Reference models to overlay (a :class:`~edwidgets.ui.reference.ReferenceModel`, a
        ``Snapshot`` or a mapping with ``atoms``/``thickness``/``frame_angle_deg``/``grid_thickness``).
        Without ``start`` the first snapshot received is used.
    update_hz:
        Maximum rendering rate (the jupyter_server drops IOPub floods above ~1000 msg/s).
    pattern_refresh_s:
        Minimum time between recomputing the displayed frame pattern while the job runs.
    structure_refresh_s:
        Minimum time between 3D-view updates (WebGL redraws are the costliest part in the browser).
    threedmol_js:
        Local 3Dmol-min.js path or URL (default: ``$EDWIDGETS_3DMOL_JS``, else py3Dmol's CDN URL).
    export_dir:
        Folder the Export button writes to.
    """

    def __init__(
        self,
        job: RefinementJobLike,
        truth: Any = None,
        start: Any = None,
        *,
        update_hz: float = 4.0,
        pattern_refresh_s: float = 2.0,
        structure_refresh_s: float = 1.0,
        threedmol_js: str | os.PathLike | None = None,
        export_dir: str | os.PathLike = "edwidgets-export",
    ) -> None:
        if update_hz <= 0:
            raise ValueError(f"update_hz must be > 0, got {update_hz}")
        self.job = job
        self.truth: ReferenceModel | None = as_reference(truth, "truth")
        self.start_model: ReferenceModel | None = as_reference(start, "start")
        self.min_interval = 1.0 / float(update_hz)
        self.pattern_refresh_s = float(pattern_refresh_s)
        self.structure_refresh_s = float(structure_refresh_s)
        self.export_dir = Path(export_dir)
        #: settings read from the controls; applied with ``job.configure`` when the job has it
        self.pending_settings: dict[str, Any] = {}

        groups = tuple(getattr(job, "parameter_groups", DEFAULT_GROUPS))
        self.controls = ControlsPanel(
            on_start=self.start,
            on_pause=self.pause,
            on_resume=self.resume,
            on_stop=self.stop,
            on_export=self._export_clicked,
            n_epochs=int(getattr(job, "n_epochs", 50)),
            learning_rate=float(getattr(job, "learning_rate", getattr(job, "lr", 0.01))),
            groups=groups,
        )
        self.status = StatusPanel()
        self.r_curves = RCurvePanel()
        self.thickness = ThicknessPanel(self.start_model, self.truth)
        self.structure = StructurePanel(self.start_model, self.truth, threedmol_js=threedmol_js)
        n_frames = len(getattr(job, "frame_angle_deg", ())) or 1
        self.pattern = PatternPanel(self._frame_pattern, n_frames=n_frames)
        self.parameters = ParameterTablePanel(self.start_model, self.truth)

        wrap = widgets.Layout(width="100%", flex_flow="row wrap", align_items="flex-start")
        super().__init__(
            [
                self.controls,
                self.status,
                widgets.HBox([self.r_curves, self.thickness], layout=wrap),
                widgets.HBox(
                    [self.structure, widgets.Box([self.parameters], layout=widgets.Layout(flex="1 1 560px", overflow="auto"))],
                    layout=wrap,
                ),
                self.pattern,
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.add_class("edwidgets-dashboard")

        # counters the tests (and curious users) can read
        self.snapshots_received = 0
        self.render_count = 0
        self.latest_rendered: Snapshot | None = None
        self._shown_state: JobState | None = None
        self._last_pattern_time = 0.0
        self._last_structure_time = 0.0

        self._pending: Snapshot | None = None
        self._pending_lock = threading.Lock()
        self._render_lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._unsubscribe = job.subscribe(self._enqueue)
        self._pump = threading.Thread(target=self._pump_loop, name="edwidgets-dashboard-pump", daemon=True)
        self._pump.start()

        existing = job.latest()
        if existing is not None:
            self._enqueue(existing)
        self._show_job_state()

    # ------------------------------------------------------------------ job control (main thread)
    def settings(self) -> dict[str, Any]:
        """What the controls say: ``{"n_epochs", "learning_rate", "refine": {group: bool}}``."""
        return self.controls.settings()

    def apply_settings(self) -> dict[str, Any]:
        """Hand the control settings to the job (``job.configure``) or keep them in ``pending_settings``."""
        settings = self.settings()
        self.pending_settings = settings
        configure = getattr(self.job, "configure", None)
        if callable(configure):
            job_lr = getattr(self.job, "learning_rate", getattr(self.job, "lr", None))
            if job_lr is not None and np.isclose(settings["learning_rate"], float(job_lr), rtol=1e-9, atol=0.0):
                # unchanged: keep the job's per-group rates (a real job's ``lrs``), which one
                # learning_rate would overwrite
                settings = {k: v for k, v in settings.items() if k != "learning_rate"}
            configure(settings)
        return settings

    def _guarded(self, action: str, func) -> None:
        try:
            func()
        except Exception as exc:  # shown to the user instead of vanishing into the kernel log
            self.status.show_error(f"{action} failed: {type(exc).__name__}: {exc}")
        self._show_job_state()

    def start(self) -> None:
        """Apply the settings and start (or continue) the job; returns at once."""
        self.status.clear_error()

        def go() -> None:
            self.apply_settings()
            self.job.start()

        self._guarded("start", go)

    def pause(self) -> None:
        self._guarded("pause", self.job.pause)

    def resume(self) -> None:
        self._guarded("resume", self.job.resume)

    def stop(self) -> None:
        self._guarded("stop", self.job.stop)

    def _frame_pattern(self, frame: int):
        return self.job.frame_pattern(frame)

    # ------------------------------------------------------------------ snapshot flow
    def _enqueue(self, snap: Snapshot) -> None:
        """Listener called from the worker thread: store the newest snapshot and wake the pump."""
        with self._pending_lock:
            self._pending = snap
            self.snapshots_received += 1
        self._wake.set()

    def _pump_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(timeout=1.0)
            if self._closed.is_set():
                break
            self._wake.clear()
            rendered = self.flush()
            if rendered:
                # throttle: at most update_hz renders per second; snapshots arriving meanwhile
                # replace each other in the pending slot
                self._closed.wait(self.min_interval)

    def flush(self) -> bool:
        """Render the pending snapshot now (if any); returns whether something was rendered."""
        with self._pending_lock:
            snap, self._pending = self._pending, None
        if snap is None:
            self._show_job_state()
            return False
        self._render(snap)
        return True

    def _render(self, snap: Snapshot) -> None:
        with self._render_lock:
            try:
                if self.start_model is None:
                    self.start_model = ReferenceModel(atoms=snap.atoms, thickness=snap.thickness.copy(),
                                                      frame_angle_deg=snap.frame_angle_deg.copy(), label="start")
                    self.thickness.set_references(self.start_model, self.truth)
                    self.structure._start = self.start_model
                    self.parameters._start = self.start_model
                self.pattern.set_frame_count(len(snap.frame_angle_deg))
                now = time.monotonic()
                final = snap.state in _TERMINAL or snap.state is JobState.PAUSED
                with self.hold_sync():
                    self.status.update(snap)
                    self.controls.set_state(self.job.state)
                    self.r_curves.update(snap)
                    self.thickness.update(snap)
                    self.parameters.update(snap)
                    if final or now - self._last_structure_time >= self.structure_refresh_s:
                        self._last_structure_time = now
                        self.structure.update(snap)
                if final or now - self._last_pattern_time >= self.pattern_refresh_s:
                    self._last_pattern_time = now
                    self.pattern.refresh()
                self._shown_state = snap.state
                self.latest_rendered = snap
                self.render_count += 1
            except Exception as exc:  # a UI bug must not kill the pump thread
                log.exception("dashboard render failed")
                self.status.show_error(f"dashboard update failed: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")

    def _show_job_state(self) -> None:
        """Reflect job state changes that came without a snapshot (e.g. right after a click)."""
        state = getattr(self.job, "state", None)
        if not isinstance(state, JobState):
            return
        error = getattr(self.job, "error", None)
        with self._render_lock:
            self.controls.set_state(state)
            if state is not self._shown_state:
                self._shown_state = state
                latest = self.latest_rendered
                text = f"epoch {latest.epoch}/{latest.n_epochs}" if latest is not None else ""
                self.status.show_state(state, text)
            if state is JobState.FAILED and error and self.status.error_text is None:
                self.status.show_error(f"error in the refinement worker: {error}")

    # ------------------------------------------------------------------ exports
    def export(self, folder: str | os.PathLike | None = None, png: bool = False, include_plotlyjs: bool | str = True) -> dict[str, Path]:
        """Write the figures (HTML, and PNG with kaleido if ``png``), the per-frame and atom tables
        (CSV) and, once the job is done and its result has ``to_cif``, the refined CIF."""
        from edwidgets.ui import export as ex

        folder = Path(folder) if folder is not None else self.export_dir
        snap = self.latest_rendered or self.job.latest()
        written: dict[str, Path] = {}
        figures = {"r_curves": self.r_curves.figure, "thickness": self.thickness.figure}
        if self.pattern.pattern is not None:
            figures[f"pattern_frame{self.pattern.pattern.frame:03d}"] = self.pattern.spots
        for name, fig in figures.items():
            written[f"{name}.html"] = ex.export_figure(fig, folder / f"{name}.html", include_plotlyjs=include_plotlyjs)
            if png:
                written[f"{name}.png"] = ex.export_figure(fig, folder / f"{name}.png")
        if snap is not None:
            written["per_frame.csv"] = ex.write_per_frame_csv(snap, folder / "per_frame.csv")
            written["atoms.csv"] = ex.write_atoms_csv(snap, folder / "atoms.csv")
        if getattr(self.job, "state", None) in _TERMINAL:
            try:
                written["refined.cif"] = ex.write_refined_cif(self.job, folder / "refined.cif")
            except ex.ExportUnavailable as exc:
                self.status.show_message(str(exc))
        return written

    def _export_clicked(self) -> None:
        try:
            written = self.export()
            self.status.show_message(f"exported {len(written)} files to {self.export_dir}")
        except Exception as exc:
            self.status.show_error(f"export failed: {type(exc).__name__}: {exc}")
        self._shown_state = None
        self._show_job_state()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unsubscribe from the job and stop the pump thread (the job keeps running)."""
        self._closed.set()
        self._wake.set()
        try:
            self._unsubscribe()
        finally:
            super().close()
