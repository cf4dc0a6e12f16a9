"""Reusable dashboard panels.  Each is an ipywidgets box with an ``update(snapshot)`` method.

Panels only read :class:`~edwidgets.refine.events.Snapshot` / ``FramePattern`` objects; they never
touch a model.  They batch their changes (``fig.batch_update()``, ``hold_sync()``) so that one
update sends one message per widget.
"""
from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from edwidgets.refine.events import AtomRecord, FramePattern, JobState, Snapshot
from edwidgets.ui.reference import ReferenceModel, format_with_su, fractional_to_cartesian_matrix
from edwidgets.ui.viewer3d import StructureView3D

DEFAULT_GROUPS = ("positions", "adp", "thickness", "scale")
_STATE_COLORS = {
    JobState.IDLE: "#777777",
    JobState.RUNNING: "#2ca02c",
    JobState.PAUSED: "#ff7f0e",
    JobState.STOPPING: "#ff7f0e",
    JobState.FINISHED: "#1f77b4",
    JobState.STOPPED: "#1f77b4",
    JobState.FAILED: "#d62728",
}
_FIG_MARGIN = dict(l=55, r=15, t=35, b=45)


def _figure(title: str, xaxis: str, yaxis: str, height: int = 300, width: int = 470) -> go.FigureWidget:
    # fixed sizes: a FigureWidget does not follow its flex box, and boxes wrap on narrow screens
    fig = go.FigureWidget()
    fig.update_layout(
        width=width,
        title=dict(text=title, x=0.02, font=dict(size=14)),
        xaxis_title=xaxis,
        yaxis_title=yaxis,
        height=height,
        margin=_FIG_MARGIN,
        template="plotly_white",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0, font=dict(size=11)),
    )
    return fig


# --------------------------------------------------------------------------------------- controls
class ControlsPanel(widgets.VBox):
    """Start / Pause / Resume / Stop, epochs, learning rate and the parameter groups to refine.

    Buttons call the given callbacks; :meth:`settings` returns what the job should take.
    """

    def __init__(
        self,
        on_start: Callable[[], None],
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
        on_stop: Callable[[], None],
        on_export: Callable[[], None] | None = None,
        n_epochs: int = 50,
        learning_rate: float = 0.01,
        groups: Sequence[str] = DEFAULT_GROUPS,
    ) -> None:
        button_layout = widgets.Layout(width="104px", margin="0 4px 0 0")
        self.start_button = widgets.Button(description="Start", icon="play", button_style="success", layout=button_layout)
        self.pause_button = widgets.Button(description="Pause", icon="pause", layout=button_layout)
        self.resume_button = widgets.Button(description="Resume", icon="step-forward", layout=button_layout)
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", layout=button_layout)
        self.export_button = widgets.Button(description="Export", icon="download", layout=button_layout)
        self.start_button.on_click(lambda _b: on_start())
        self.pause_button.on_click(lambda _b: on_pause())
        self.resume_button.on_click(lambda _b: on_resume())
        self.stop_button.on_click(lambda _b: on_stop())
        if on_export is not None:
            self.export_button.on_click(lambda _b: on_export())
        else:
            self.export_button.layout.display = "none"
        self.epochs = widgets.BoundedIntText(value=int(n_epochs), min=1, max=100_000, description="epochs", layout=widgets.Layout(width="170px"))
        self.learning_rate = widgets.BoundedFloatText(
            value=float(learning_rate), min=1e-6, max=10.0, step=0.001, description="learning rate", layout=widgets.Layout(width="210px"),
            style={"description_width": "initial"},
        )
        self.group_boxes = {
            g: widgets.Checkbox(value=True, description=g, indent=False, layout=widgets.Layout(width="auto", margin="0 12px 0 0")) for g in groups
        }
        groups_row = widgets.HBox(
            [widgets.Label("refine:")] + list(self.group_boxes.values()), layout=widgets.Layout(align_items="center")
        )
        buttons = widgets.HBox(
            [self.start_button, self.pause_button, self.resume_button, self.stop_button, self.export_button],
            layout=widgets.Layout(),
        )
        settings_row = widgets.HBox([self.epochs, self.learning_rate], layout=widgets.Layout())
        super().__init__([buttons, settings_row, groups_row])
        self.set_state(JobState.IDLE)

    def settings(self) -> dict[str, Any]:
        """``{"n_epochs": int, "learning_rate": float, "refine": {group: bool}}``."""
        return {
            "n_epochs": int(self.epochs.value),
            "learning_rate": float(self.learning_rate.value),
            "refine": {g: bool(box.value) for g, box in self.group_boxes.items()},
        }

    def set_state(self, state: JobState) -> None:
        """Enable the buttons that make sense in ``state``."""
        running = state in (JobState.RUNNING,)
        active = state in (JobState.RUNNING, JobState.PAUSED, JobState.STOPPING)
        self.start_button.disabled = active or state is JobState.FAILED
        self.pause_button.disabled = not running
        self.resume_button.disabled = state is not JobState.PAUSED
        self.stop_button.disabled = not (state in (JobState.RUNNING, JobState.PAUSED))
        self.start_button.description = "Continue" if state in (JobState.STOPPED, JobState.FINISHED) else "Start"


# --------------------------------------------------------------------------------------- R curves
class RCurvePanel(widgets.VBox):
    """wR_all, R_obs and validation wR against epoch (percent)."""

    KEYS = (("wR_all", "wR(all)", "#1f77b4"), ("R_obs", "R(obs)", "#ff7f0e"), ("wR_val", "wR(validation)", "#2ca02c"))

    def __init__(self, height: int = 300, width: int = 470) -> None:
        self.figure = _figure("R factors", "epoch", "R (%)", height, width)
        for _key, name, color in self.KEYS:
            self.figure.add_scatter(x=[], y=[], mode="lines+markers", name=name, line=dict(color=color, width=2), marker=dict(size=4))
        super().__init__([self.figure])

    def update(self, snap: Snapshot) -> None:
        hist = snap.history
        epochs = np.asarray(hist.get("epoch", []), float)
        with self.figure.batch_update():
            for trace, (key, _name, _c) in zip(self.figure.data, self.KEYS):
                y = np.asarray(hist.get(key, []), float) * 100.0
                n = min(len(epochs), len(y))
                if n and np.all(np.isnan(y[:n])):
                    n = 0
                trace.x = epochs[:n]
                trace.y = y[:n]

    @property
    def n_points(self) -> int:
        x = self.figure.data[0].x
        return 0 if x is None else len(x)


# --------------------------------------------------------------------------------------- thickness
class ThicknessPanel(widgets.VBox):
    """Thickness against frame tilt: current model, start, truth and per-frame grid search."""

    def __init__(self, start: ReferenceModel | None = None, truth: ReferenceModel | None = None, height: int = 300,
                 width: int = 470) -> None:
        self.figure = _figure("Thickness vs tilt", "frame tilt (°)", "thickness (Å)", height, width)
        self.figure.add_scatter(x=[], y=[], mode="markers", name="grid search", marker=dict(symbol="x", size=6, color="#7f7f7f"))
        self.figure.add_scatter(x=[], y=[], mode="lines", name="start", line=dict(dash="dash", color="#9e9e9e"))
        self.figure.add_scatter(x=[], y=[], mode="lines", name="truth", line=dict(color="#2ca02c", width=3))
        self.figure.add_scatter(x=[], y=[], mode="lines+markers", name="current", line=dict(color="#1f77b4", width=2), marker=dict(size=4))
        super().__init__([self.figure])
        self._start = start
        self._truth = truth
        self._references_drawn = False

    def set_references(self, start: ReferenceModel | None, truth: ReferenceModel | None) -> None:
        self._start, self._truth = start, truth
        self._references_drawn = False

    def update(self, snap: Snapshot) -> None:
        angles = np.asarray(snap.frame_angle_deg, float)
        with self.figure.batch_update():
            grid, start, truth, current = self.figure.data
            if not self._references_drawn:
                for trace, ref, attr in ((grid, self._start, "grid_thickness"), (start, self._start, "thickness"), (truth, self._truth, "thickness")):
                    values = getattr(ref, attr, None) if ref is not None else None
                    if values is None:
                        continue
                    x = ref.frame_angle_deg if ref.frame_angle_deg is not None else angles
                    if len(x) == len(values):
                        trace.x, trace.y = np.asarray(x, float), np.asarray(values, float)
                self._references_drawn = True
            current.x = angles
            current.y = np.asarray(snap.thickness, float)


# --------------------------------------------------------------------------------------- 3D view
class StructurePanel(widgets.VBox):
    """3D view of the asymmetric unit in its unit cell: start, current and truth overlaid."""

    def __init__(
        self,
        start: ReferenceModel | None = None,
        truth: ReferenceModel | None = None,
        threedmol_js: str | os.PathLike | None = None,
        height: str = "340px",
        width: str = "440px",
    ) -> None:
        self.view = StructureView3D(threedmol_js=threedmol_js, height=height, width=width)
        legend = widgets.HTML(
            "<span style='font-size:12px'>"
            "<b>current</b> (element colours, labelled) · <span style='color:#9e9e9e'>● start</span> · "
            "<span style='color:#2ca02c'>● truth</span> · cell edges "
            "<span style='color:#d62728'>a</span> <span style='color:#2ca02c'>b</span> "
            "<span style='color:#1f77b4'>c</span></span>"
        )
        title = widgets.HTML("<b>Asymmetric unit</b>")
        legend.layout.width = width
        super().__init__([title, self.view, legend], layout=widgets.Layout(width=width))
        self._start, self._truth = start, truth

    def update(self, snap: Snapshot) -> None:
        structures: dict[str, Sequence[AtomRecord]] = {}
        if self._truth is not None and self._truth.atoms:
            structures["truth"] = self._truth.atoms
        if self._start is not None and self._start.atoms:
            structures["start"] = self._start.atoms
        structures["current"] = snap.atoms
        self.view.set_structures(snap.cell, structures)


# --------------------------------------------------------------------------------------- pattern
class PatternPanel(widgets.VBox):
    """One frame: observed vs calculated spots, I_obs vs I_calc, and the frame's R, thickness, orientation."""

    def __init__(self, frame_pattern: Callable[[int], FramePattern], n_frames: int = 1, height: int = 380) -> None:
        self._frame_pattern = frame_pattern
        self.slider = widgets.IntSlider(value=0, min=0, max=max(n_frames - 1, 0), description="frame", continuous_update=False,
                                        layout=widgets.Layout(width="420px"))
        self.spots = _figure("Frame pattern", "x (Å⁻¹)", "y (Å⁻¹)", height, width=520)
        self.spots.add_scatter(x=[], y=[], mode="markers", name="observed", marker=dict(symbol="circle-open", color="black", line=dict(width=1.5)))
        self.spots.add_scatter(
            x=[], y=[], mode="markers", name="calculated",
            marker=dict(color=[], colorscale="Viridis", opacity=0.75, showscale=True, colorbar=dict(title="log₁₀ I_calc", thickness=12)),
        )
        self.spots.update_yaxes(scaleanchor="x", scaleratio=1)
        self.versus = _figure("I_obs vs I_calc", "I_calc", "I_obs", height, width=420)
        self.versus.update_xaxes(type="log")
        self.versus.update_yaxes(type="log")
        self.versus.add_scatter(x=[], y=[], mode="markers", name="reflections", marker=dict(size=5, color="#1f77b4"), showlegend=False)
        self.versus.add_scatter(x=[], y=[], mode="lines", name="y = x", line=dict(color="#999999", dash="dot"), showlegend=False)
        self.info = widgets.HTML()
        self.pattern: FramePattern | None = None
        self.frames_drawn = 0
        self.slider.observe(self._on_slider, names="value")
        figures = widgets.HBox([self.spots, self.versus], layout=widgets.Layout(width="100%", flex_flow="row wrap"))
        super().__init__([widgets.HBox([self.slider, self.info], layout=widgets.Layout(align_items="center")), figures])

    def set_frame_count(self, n_frames: int) -> None:
        if n_frames - 1 != self.slider.max:
            self.slider.max = max(n_frames - 1, 0)

    def _on_slider(self, change: dict) -> None:
        self.show_frame(int(change["new"]))

    def refresh(self) -> None:
        """Recompute the displayed frame (after the model changed)."""
        self.show_frame(int(self.slider.value))

    def show_frame(self, frame: int) -> FramePattern:
        pattern = self._frame_pattern(int(frame))
        self.draw(pattern)
        return pattern

    def draw(self, p: FramePattern) -> None:
        i_obs = np.asarray(p.i_obs, float)
        i_calc = np.asarray(p.i_calc, float)
        top = max(float(np.max(np.abs(i_obs))) if len(i_obs) else 1.0, float(np.max(np.abs(i_calc))) if len(i_calc) else 1.0, 1e-12)

        def size(i):
            return 5.0 + 25.0 * np.sqrt(np.clip(i, 0, None) / top)

        hover = [f"{h} {k} {l}" for h, k, l in zip(np.asarray(p.h).tolist(), np.asarray(p.k).tolist(), np.asarray(p.l).tolist())]
        log_calc = np.log10(np.clip(i_calc, top * 1e-4, None))
        positive = (i_obs > 0) & (i_calc > 0)  # log axes: non-positive (noisy weak) spots are left out
        lo = max(float(min(np.min(i_obs[positive], initial=top), np.min(i_calc[positive], initial=top))), top * 1e-6)
        with self.spots.batch_update(), self.versus.batch_update():
            observed, calculated = self.spots.data
            observed.x, observed.y = np.asarray(p.x, float), np.asarray(p.y, float)
            observed.marker.size = size(i_obs)
            observed.text = hover
            calculated.x, calculated.y = np.asarray(p.x, float), np.asarray(p.y, float)
            calculated.marker.size = size(i_calc) * 0.75
            calculated.marker.color = log_calc
            calculated.text = hover
            points, diagonal = self.versus.data
            points.x, points.y = i_calc[positive], i_obs[positive]
            points.text = [t for t, keep in zip(hover, positive) if keep]
            diagonal.x, diagonal.y = [lo, top], [lo, top]
        self.pattern = p
        self.frames_drawn += 1
        orientation = np.asarray(p.orientation, float)
        rows = "".join("<tr>" + "".join(f"<td style='padding:0 4px'>{v:+.3f}</td>" for v in row) + "</tr>" for row in orientation)
        self.info.value = (
            f"<div style='font-size:12px;line-height:1.35'><b>frame {p.frame}</b> · tilt {p.angle_deg:+.2f}° · "
            f"thickness {p.thickness:.0f} Å · R<sub>frame</sub> {100 * p.r_frame:.1f} % · {len(i_obs)} reflections"
            f"<table style='font-family:monospace;font-size:11px'>{rows}</table></div>"
        )


# --------------------------------------------------------------------------------------- table
def _fmt_su(value: float, su: float | None, digits: int = 4) -> str:
    return format_with_su(value, su, digits)


class ParameterTablePanel(widgets.VBox):
    """Positions, U_iso (with s.u.), the last shift and the distance to start and truth (Å)."""

    def __init__(self, start: ReferenceModel | None = None, truth: ReferenceModel | None = None) -> None:
        self.table = widgets.HTML()
        super().__init__([widgets.HTML("<b>Parameters</b>"), self.table])
        self._start, self._truth = start, truth
        self._previous: dict[str, np.ndarray] = {}

    def update(self, snap: Snapshot) -> None:
        matrix = fractional_to_cartesian_matrix(snap.cell)

        def by_label(ref: ReferenceModel | None) -> dict[str, np.ndarray]:
            return {} if ref is None else {a.label: np.asarray(a.frac, float) for a in ref.atoms}

        start, truth = by_label(self._start), by_label(self._truth)

        def dist(frac: np.ndarray, other: np.ndarray | None) -> str:
            if other is None:
                return "–"
            delta = frac - other
            delta -= np.round(delta)  # nearest lattice image
            return f"{np.linalg.norm(matrix @ delta):.4f}"

        head = ["site", "el", "x", "y", "z", "U<sub>iso</sub> (Å²)", "Δ last (Å)", "Δ start (Å)"] + (["Δ truth (Å)"] if truth else [])
        rows = []
        current: dict[str, np.ndarray] = {}
        for atom in snap.atoms:
            frac = np.asarray(atom.frac, float)
            current[atom.label] = frac
            sus = atom.frac_su or (None, None, None)
            cells = [html.escape(atom.label), html.escape(atom.element)]
            cells += [_fmt_su(v, s) for v, s in zip(frac, sus)]
            cells.append(_fmt_su(atom.u_iso, atom.u_iso_su))
            cells.append(dist(frac, self._previous.get(atom.label)))
            cells.append(dist(frac, start.get(atom.label)))
            if truth:
                cells.append(dist(frac, truth.get(atom.label)))
            rows.append(cells)
        self._previous = current
        shifts = " · ".join(f"{k} {v:.2e}" for k, v in snap.max_shift.items()) or "–"
        th = "".join(f"<th style='padding:2px 5px;text-align:right;white-space:nowrap'>{h}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td style='padding:2px 5px;text-align:right;font-family:monospace;white-space:nowrap'>{c}</td>" for c in r) + "</tr>" for r in rows)
        self.table.value = (
            f"<table style='border-collapse:collapse;font-size:12px'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
            f"<div style='font-size:11px;color:#555'>max shift this epoch: {shifts} · {html.escape(snap.space_group)} · "
            f"cell {' '.join(f'{v:g}' for v in snap.cell)}</div>"
        )


# --------------------------------------------------------------------------------------- status
class StatusPanel(widgets.VBox):
    """Progress, speed, state and any error raised in the worker."""

    def __init__(self) -> None:
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="220px"))
        self.line = widgets.HTML()
        self.error = widgets.HTML()
        self.error_text: str | None = None
        self.message_text = ""
        super().__init__([widgets.HBox([self.progress, self.line], layout=widgets.Layout(align_items="center")), self.error])
        self.show_state(JobState.IDLE)

    def show_state(self, state: JobState, text: str = "") -> None:
        color = _STATE_COLORS.get(state, "#777")
        self.line.value = (
            f"<span style='font-size:13px'><b style='color:{color}'>● {state.value}</b> {html.escape(text)}"
            f"{' · ' + html.escape(self.message_text) if self.message_text else ''}</span>"
        )

    def update(self, snap: Snapshot) -> None:
        with self.progress.hold_sync():
            self.progress.max = max(int(snap.n_epochs), 1)
            self.progress.value = min(int(snap.epoch), self.progress.max)
            self.progress.bar_style = {"failed": "danger", "finished": "success"}.get(snap.state.value, "")
        speed = snap.seconds_per_epoch
        parts = [f"epoch {snap.epoch}/{snap.n_epochs}"]
        if math.isfinite(speed) and speed > 0:
            parts.append(f"{speed:.2f} s/epoch")
            if snap.state is JobState.RUNNING:
                parts.append(f"ETA {max(snap.n_epochs - snap.epoch, 0) * speed:.0f} s")
        parts.append(f"elapsed {snap.elapsed_s:.1f} s")
        if math.isfinite(snap.wr_all):
            parts.append(f"wR(all) {100 * snap.wr_all:.2f} %")
        if snap.message:
            parts.append(snap.message)
        self.show_state(snap.state, " · ".join(parts))
        if snap.error:
            self.show_error(f"error in the refinement worker: {snap.error}")

    def show_message(self, text: str) -> None:
        self.message_text = text

    def show_error(self, text: str) -> None:
        self.error_text = text
        self.error.value = (
            "<div style='color:#a00;background:#fdecea;border:1px solid #d62728;padding:4px 8px;font-size:12px;"
            f"white-space:pre-wrap'>{html.escape(text)}</div>"
        )

    def clear_error(self) -> None:
        self.error_text = None
        self.error.value = ""
