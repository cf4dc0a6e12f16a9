"""Teaching widgets: explore dynamical vs kinematical diffraction with sliders.

Both widgets call the public physics API (``edwidgets.simulate_pattern`` and
``edwidgets.kinematic_pattern``), looked up when they compute, so they work with any build that
provides it and give a clear message otherwise.
"""
from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from edwidgets.errors import EdwidgetsError

PatternFunction = Callable[..., pd.DataFrame]


def _physics(simulate: PatternFunction | None, kinematic: PatternFunction | None) -> tuple[PatternFunction, PatternFunction]:
    if simulate is not None and kinematic is not None:
        return simulate, kinematic
    try:
        import edwidgets
    except ImportError as exc:  # pragma: no cover - only in a broken installation
        raise EdwidgetsError(f"the edwidgets physics could not be imported: {exc}") from exc
    sim = simulate or getattr(edwidgets, "simulate_pattern", None)
    kin = kinematic or getattr(edwidgets, "kinematic_pattern", None)
    if sim is None or kin is None:
        raise EdwidgetsError("this edwidgets build has no simulate_pattern/kinematic_pattern yet")
    return sim, kin


def _as_crystal(crystal: Any) -> Any:
    if isinstance(crystal, str):
        from edwidgets.crystal import load_structure

        return load_structure(crystal)
    return crystal


def _rotation_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rotation_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def orientation_kwargs(crystal: Any, zone_axis: Sequence[float], tilt_x_deg: float, tilt_y_deg: float) -> dict[str, Any]:
    """``zone_axis=...`` when untilted, else ``orientation = R_x(tilt_x) R_y(tilt_y) R_zone`` (lab-frame
    tilts of the crystal away from the zone axis; R maps crystal Cartesian axes to the lab, beam +z)."""
    if abs(tilt_x_deg) < 1e-12 and abs(tilt_y_deg) < 1e-12:
        return {"zone_axis": tuple(float(v) for v in zone_axis)}
    from edwidgets.physics.beams import orientation_from_zone_axis

    base = orientation_from_zone_axis(crystal.real_basis(), zone_axis)
    return {"orientation": _rotation_x(tilt_x_deg) @ _rotation_y(tilt_y_deg) @ base}


def _parse_triplet(text: str, what: str) -> tuple[int, int, int]:
    parts = text.replace(",", " ").replace("(", " ").replace(")", " ").replace("[", " ").replace("]", " ").split()
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise EdwidgetsError(f"{what} must be three integers like '1 0 0', got {text!r}")
    if what == "zone axis" and not any(values):
        raise EdwidgetsError("zone axis must not be 0 0 0")
    return values  # type: ignore[return-value]


def _error_html(text: str) -> str:
    return f"<div style='color:#a00;font-size:12px'>{html.escape(text)}</div>"


def _spot_figure(title: str, size: int = 430) -> go.FigureWidget:
    fig = go.FigureWidget()
    fig.add_scatter(x=[], y=[], mode="markers", name="reflections",
                    marker=dict(color=[], colorscale="Viridis", cmin=-4, cmax=0, showscale=False, line=dict(width=0)))
    fig.add_scatter(x=[0], y=[0], mode="markers", name="000", marker=dict(symbol="x-thin", size=12, line=dict(width=2, color="black")))
    fig.update_layout(title=dict(text=title, x=0.02), width=size, height=size, margin=dict(l=50, r=15, t=40, b=45),
                      template="plotly_white", showlegend=False, xaxis_title="x (Å⁻¹)", yaxis_title="y (Å⁻¹)")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


class PatternExplorer(widgets.VBox):
    """Dynamical and kinematical patterns side by side, with thickness, tilt and voltage sliders.

    ``crystal`` is a Crystal or a library name (e.g. ``"quartz_P3221"``).  Spot area ∝ intensity
    relative to the strongest diffracted beam of each panel; colour is log₁₀ of the same.
    """

    def __init__(
        self,
        crystal: Any,
        zone_axis: Sequence[int] = (0, 0, 1),
        thickness: float = 500.0,
        voltage_kv: float = 200.0,
        g_max: float = 1.5,
        sg_max: float = 0.02,
        max_thickness: float = 3000.0,
        max_tilt_deg: float = 3.0,
        simulate: PatternFunction | None = None,
        kinematic: PatternFunction | None = None,
    ) -> None:
        self.crystal = _as_crystal(crystal)
        self._simulate, self._kinematic = simulate, kinematic
        self.g_max, self.sg_max = float(g_max), float(sg_max)
        slider = dict(continuous_update=False, style={"description_width": "90px"}, layout=widgets.Layout(width="380px"))
        self.thickness = widgets.FloatSlider(value=thickness, min=10, max=max_thickness, step=10, description="thickness (Å)", **slider)
        self.tilt_x = widgets.FloatSlider(value=0.0, min=-max_tilt_deg, max=max_tilt_deg, step=0.05, description="tilt x (°)", **slider)
        self.tilt_y = widgets.FloatSlider(value=0.0, min=-max_tilt_deg, max=max_tilt_deg, step=0.05, description="tilt y (°)", **slider)
        self.voltage = widgets.FloatSlider(value=voltage_kv, min=60, max=400, step=10, description="voltage (kV)", **slider)
        self.zone_axis = widgets.Text(value=" ".join(str(int(v)) for v in zone_axis), description="zone axis",
                                      continuous_update=False, style={"description_width": "90px"}, layout=widgets.Layout(width="240px"))
        self.dynamical_figure = _spot_figure("Dynamical (Bloch waves)")
        self.kinematical_figure = _spot_figure("Kinematical")
        self.info = widgets.HTML()
        self.error = widgets.HTML()
        self.dynamical: pd.DataFrame | None = None
        self.kinematical: pd.DataFrame | None = None
        self.compute_count = 0
        for control in (self.thickness, self.tilt_x, self.tilt_y, self.voltage, self.zone_axis):
            control.observe(lambda _change: self.update(), names="value")
        controls = widgets.HBox([widgets.VBox([self.thickness, self.voltage, self.zone_axis]), widgets.VBox([self.tilt_x, self.tilt_y])],
                                layout=widgets.Layout(flex_flow="row wrap"))
        figures = widgets.HBox([self.dynamical_figure, self.kinematical_figure], layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([controls, self.info, self.error, figures])
        self.update()

    def parameters(self) -> dict[str, Any]:
        """Arguments of the physics call for the current slider values."""
        zone = _parse_triplet(self.zone_axis.value, "zone axis")
        kwargs = orientation_kwargs(self.crystal, zone, float(self.tilt_x.value), float(self.tilt_y.value))
        kwargs.update(thickness=float(self.thickness.value), voltage_kv=float(self.voltage.value), g_max=self.g_max, sg_max=self.sg_max)
        return kwargs

    def update(self) -> None:
        """Recompute both patterns (called by every slider)."""
        try:
            simulate, kinematic = _physics(self._simulate, self._kinematic)
            kwargs = self.parameters()
            tic = time.perf_counter()
            dyn = simulate(self.crystal, **kwargs)
            kin = kinematic(self.crystal, **kwargs)
            seconds = time.perf_counter() - tic
        except Exception as exc:  # shown next to the sliders, not as a traceback in a callback
            self.error.value = _error_html(f"{type(exc).__name__}: {exc}")
            return
        self.error.value = ""
        self.dynamical, self.kinematical = dyn, kin
        self.compute_count += 1
        _draw_spots(self.dynamical_figure, dyn)
        _draw_spots(self.kinematical_figure, kin)
        direct = dyn[(dyn.h == 0) & (dyn.k == 0) & (dyn.l == 0)]
        i000 = float(direct.intensity.iloc[0]) if len(direct) else float("nan")
        self.info.value = (
            f"<span style='font-size:12px'>{len(dyn)} beams · direct beam I₀₀₀ = {i000:.3f} · "
            f"Σ I(dynamical) = {dyn.intensity.sum():.3f} · computed in {seconds:.2f} s</span>"
        )


def _draw_spots(fig: go.FigureWidget, df: pd.DataFrame) -> None:
    diffracted = df[(df.h != 0) | (df.k != 0) | (df.l != 0)]
    intensity = diffracted.intensity.to_numpy(float)
    top = float(intensity.max()) if len(intensity) and intensity.max() > 0 else 1.0
    relative = np.clip(intensity / top, 1e-4, 1.0)
    hover = [f"{h} {k} {l}: {i:.3g}" for h, k, l, i in zip(diffracted.h, diffracted.k, diffracted.l, intensity)]
    with fig.batch_update():
        spots = fig.data[0]
        spots.x = diffracted.x.to_numpy(float)
        spots.y = diffracted.y.to_numpy(float)
        spots.marker.size = 3 + 30 * np.sqrt(relative)
        spots.marker.color = np.log10(relative)
        spots.text = hover


class PendellosungExplorer(widgets.VBox):
    """Intensity of one reflection against thickness: dynamical (Pendellösung) vs kinematical."""

    def __init__(
        self,
        crystal: Any,
        hkl: Sequence[int] = (1, 0, 0),
        zone_axis: Sequence[int] = (0, 0, 1),
        voltage_kv: float = 200.0,
        max_thickness: float = 2000.0,
        n_thickness: int = 200,
        g_max: float = 1.5,
        sg_max: float = 0.02,
        simulate: PatternFunction | None = None,
        kinematic: PatternFunction | None = None,
    ) -> None:
        self.crystal = _as_crystal(crystal)
        self._simulate, self._kinematic = simulate, kinematic
        self.g_max, self.sg_max, self.n_thickness = float(g_max), float(sg_max), int(n_thickness)
        text = dict(continuous_update=False, style={"description_width": "90px"}, layout=widgets.Layout(width="240px"))
        slider = dict(continuous_update=False, style={"description_width": "90px"}, layout=widgets.Layout(width="380px"))
        self.hkl = widgets.Text(value=" ".join(str(int(v)) for v in hkl), description="reflection", **text)
        self.zone_axis = widgets.Text(value=" ".join(str(int(v)) for v in zone_axis), description="zone axis", **text)
        self.max_thickness = widgets.FloatSlider(value=max_thickness, min=100, max=5000, step=50, description="max t (Å)", **slider)
        self.voltage = widgets.FloatSlider(value=voltage_kv, min=60, max=400, step=10, description="voltage (kV)", **slider)
        self.tilt_x = widgets.FloatSlider(value=0.0, min=-3, max=3, step=0.05, description="tilt x (°)", **slider)
        self.tilt_y = widgets.FloatSlider(value=0.0, min=-3, max=3, step=0.05, description="tilt y (°)", **slider)
        self.figure = go.FigureWidget()
        self.figure.add_scatter(x=[], y=[], mode="lines", name="dynamical", line=dict(color="#1f77b4", width=2))
        self.figure.add_scatter(x=[], y=[], mode="lines", name="kinematical", line=dict(color="#ff7f0e", dash="dash"))
        self.figure.add_scatter(x=[], y=[], mode="lines", name="direct beam (dynamical)", line=dict(color="#9e9e9e", dash="dot"), visible="legendonly")
        self.figure.update_layout(width=760, height=380, template="plotly_white", margin=dict(l=55, r=15, t=40, b=45),
                                  xaxis_title="thickness (Å)", yaxis_title="intensity (fraction of incident)",
                                  title=dict(text="Pendellösung", x=0.02))
        self.info = widgets.HTML()
        self.error = widgets.HTML()
        self.curve: pd.DataFrame | None = None
        self.compute_count = 0
        for control in (self.hkl, self.zone_axis, self.max_thickness, self.voltage, self.tilt_x, self.tilt_y):
            control.observe(lambda _change: self.update(), names="value")
        controls = widgets.HBox(
            [widgets.VBox([self.hkl, self.zone_axis]), widgets.VBox([self.max_thickness, self.voltage]), widgets.VBox([self.tilt_x, self.tilt_y])],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        super().__init__([controls, self.info, self.error, self.figure])
        self.update()

    def update(self) -> None:
        try:
            simulate, kinematic = _physics(self._simulate, self._kinematic)
            h, k, l = _parse_triplet(self.hkl.value, "reflection")
            zone = _parse_triplet(self.zone_axis.value, "zone axis")
            kwargs = orientation_kwargs(self.crystal, zone, float(self.tilt_x.value), float(self.tilt_y.value))
            thickness = np.linspace(0.0, float(self.max_thickness.value), self.n_thickness)
            kwargs.update(thickness=thickness, voltage_kv=float(self.voltage.value), g_max=self.g_max, sg_max=self.sg_max)
            dyn = simulate(self.crystal, **kwargs)
            kin = kinematic(self.crystal, **kwargs)
            dyn_curve = _reflection_curve(dyn, (h, k, l))
            if dyn_curve is None:
                strongest = (
                    dyn[(dyn.h != 0) | (dyn.k != 0) | (dyn.l != 0)].groupby(["h", "k", "l"]).intensity.max().nlargest(6).index.tolist()
                )
                choices = ", ".join(" ".join(str(int(v)) for v in idx) for idx in strongest)
                raise EdwidgetsError(
                    f"reflection {h} {k} {l} is not excited in this orientation (|g| > g_max or |s_g| > sg_max); try: {choices}"
                )
            kin_curve = _reflection_curve(kin, (h, k, l))
            direct = _reflection_curve(dyn, (0, 0, 0))
        except Exception as exc:
            self.error.value = _error_html(f"{type(exc).__name__}: {exc}")
            return
        self.error.value = ""
        self.curve = dyn_curve
        self.compute_count += 1
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = dyn_curve.thickness.to_numpy(), dyn_curve.intensity.to_numpy()
            if kin_curve is not None:
                self.figure.data[1].x, self.figure.data[1].y = kin_curve.thickness.to_numpy(), kin_curve.intensity.to_numpy()
            if direct is not None:
                self.figure.data[2].x, self.figure.data[2].y = direct.thickness.to_numpy(), direct.intensity.to_numpy()
            self.figure.layout.title.text = f"Pendellösung of {h} {k} {l}"
        s_g = float(dyn_curve.excitation_error.iloc[0]) if "excitation_error" in dyn_curve else float("nan")
        self.info.value = (
            f"<span style='font-size:12px'>{h} {k} {l}: s<sub>g</sub> = {s_g:+.4f} Å⁻¹ · "
            f"max I = {dyn_curve.intensity.max():.3f} at t = {dyn_curve.thickness.iloc[int(dyn_curve.intensity.argmax())]:.0f} Å</span>"
        )


def _reflection_curve(df: pd.DataFrame, hkl: tuple[int, int, int]) -> pd.DataFrame | None:
    rows = df[(df.h == hkl[0]) & (df.k == hkl[1]) & (df.l == hkl[2])]
    if rows.empty:
        return None
    if "thickness" not in rows:
        raise EdwidgetsError("the physics returned no thickness column for a thickness series")
    if "orientation" in rows:
        rows = rows[rows.orientation == rows.orientation.iloc[0]]
    return rows.sort_values("thickness").reset_index(drop=True)
