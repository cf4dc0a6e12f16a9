"""Teaching widgets: slider logic with a stand-in physics function, then once with the real physics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from edwidgets.ui.teaching import PatternExplorer, PendellosungExplorer  # noqa: E402


class FakeCrystal:
    """Cubic 5 Å cell: enough for the widgets' orientation arithmetic."""

    def real_basis(self):
        return np.eye(3) * 5.0


class RecordingPhysics:
    """Stands in for simulate_pattern / kinematic_pattern and records every call."""

    def __init__(self, scale: float = 1.0):
        self.calls: list[dict] = []
        self.scale = scale

    def __call__(self, crystal, zone_axis=None, *, orientation=None, thickness=500.0, voltage_kv=200.0, g_max=1.5, sg_max=0.02, absorption=0.0):
        self.calls.append(dict(zone_axis=zone_axis, orientation=orientation, thickness=thickness, voltage_kv=voltage_kv))
        hkl = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (-1, 0, 0)]
        t_values = np.atleast_1d(np.asarray(thickness, float))
        rows = []
        for t in t_values:
            for h, k, l in hkl:
                g = np.hypot(h, k) * 0.2
                intensity = 1.0 - 0.1 * np.sin(t / 300) ** 2 if (h, k, l) == (0, 0, 0) else self.scale * (0.05 + 0.01 * h) * np.sin(t / 300 * (1 + k)) ** 2
                rows.append(dict(h=h, k=k, l=l, intensity=intensity, excitation_error=0.001 * h, x=0.2 * h, y=0.2 * k, g=g, thickness=t))
        df = pd.DataFrame(rows)
        if len(t_values) == 1:
            df = df.drop(columns="thickness")
        return df


def test_pattern_explorer_sliders_recompute_with_the_right_arguments():
    dyn, kin = RecordingPhysics(), RecordingPhysics(scale=3.0)
    explorer = PatternExplorer(FakeCrystal(), zone_axis=(0, 0, 1), thickness=400, simulate=dyn, kinematic=kin)
    assert explorer.compute_count == 1 and explorer.error.value == ""
    assert dyn.calls[-1]["zone_axis"] == (0.0, 0.0, 1.0) and dyn.calls[-1]["thickness"] == 400
    # four diffracted spots in each panel; 000 is drawn separately
    assert len(explorer.dynamical_figure.data[0].x) == 4 and len(explorer.kinematical_figure.data[0].x) == 4

    explorer.thickness.value = 900
    assert explorer.compute_count == 2 and dyn.calls[-1]["thickness"] == 900 and kin.calls[-1]["thickness"] == 900
    explorer.voltage.value = 300
    assert dyn.calls[-1]["voltage_kv"] == 300

    explorer.tilt_x.value = 1.0
    call = dyn.calls[-1]
    assert call["zone_axis"] is None
    rot = np.asarray(call["orientation"])
    assert np.allclose(rot @ rot.T, np.eye(3))
    # the beam (lab z) is now 1° away from the zone axis [001]
    beam_in_crystal = rot.T @ np.array([0, 0, 1.0])
    assert np.degrees(np.arccos(beam_in_crystal @ [0, 0, 1])) == pytest.approx(1.0, abs=1e-9)

    # spot size follows intensity relative to the strongest diffracted beam
    sizes = np.asarray(explorer.dynamical_figure.data[0].marker.size)
    assert sizes.max() == pytest.approx(33.0)


def test_pattern_explorer_shows_bad_input_instead_of_raising():
    explorer = PatternExplorer(FakeCrystal(), simulate=RecordingPhysics(), kinematic=RecordingPhysics())
    explorer.zone_axis.value = "1 0"
    assert "zone axis must be three integers" in explorer.error.value
    explorer.zone_axis.value = "0 0 0"
    assert "must not be 0 0 0" in explorer.error.value
    explorer.zone_axis.value = "1 1 0"
    assert explorer.error.value == ""

    def broken(*args, **kwargs):
        raise ValueError("thickness must be non-negative")

    bad = PatternExplorer(FakeCrystal(), simulate=broken, kinematic=RecordingPhysics())
    assert "thickness must be non-negative" in bad.error.value and bad.compute_count == 0


def test_pendellosung_plots_the_chosen_reflection_against_thickness():
    dyn, kin = RecordingPhysics(), RecordingPhysics(scale=2.0)
    widget = PendellosungExplorer(FakeCrystal(), hkl=(1, 0, 0), max_thickness=1200, n_thickness=61, simulate=dyn, kinematic=kin)
    assert widget.error.value == ""
    thickness = np.asarray(dyn.calls[-1]["thickness"])
    assert thickness.shape == (61,) and thickness[0] == 0 and thickness[-1] == 1200
    x, y = np.asarray(widget.figure.data[0].x), np.asarray(widget.figure.data[0].y)
    assert np.allclose(x, thickness) and np.allclose(y, 0.06 * np.sin(thickness / 300) ** 2)
    assert np.allclose(widget.figure.data[1].y, 2 * 0.06 * np.sin(thickness / 300) ** 2)

    widget.hkl.value = "0 1 0"
    assert np.allclose(widget.figure.data[0].y, 0.05 * np.sin(thickness / 300 * 2) ** 2)
    assert "0 1 0" in widget.figure.layout.title.text

    widget.hkl.value = "5 5 5"
    assert "not excited" in widget.error.value and "1 0 0" in widget.error.value


# ------------------------------------------------------------------------------- real physics
def _real_physics():
    import edwidgets

    if not hasattr(edwidgets, "simulate_pattern") or not hasattr(edwidgets, "kinematic_pattern"):
        pytest.skip("edwidgets.simulate_pattern is not available yet")
    from edwidgets.crystal import load_structure

    return load_structure("quartz_P3221")


def test_real_physics_thin_crystal_dynamical_matches_kinematical():
    """In the thin-crystal limit the dynamical pattern approaches the kinematical one (same relative intensities)."""
    crystal = _real_physics()
    explorer = PatternExplorer(crystal, zone_axis=(0, 0, 1), thickness=10.0)
    assert explorer.error.value == "", explorer.error.value
    dyn, kin = explorer.dynamical, explorer.kinematical
    key = ["h", "k", "l"]
    merged = dyn.merge(kin, on=key, suffixes=("_dyn", "_kin"))
    merged = merged[(merged.h != 0) | (merged.k != 0) | (merged.l != 0)]
    merged = merged[merged.intensity_kin > merged.intensity_kin.max() * 1e-3]
    assert len(merged) >= 6
    ratio = merged.intensity_dyn / merged.intensity_kin
    assert ratio.std() / ratio.mean() < 0.05, merged[key + ["intensity_dyn", "intensity_kin"]]
    # flux conservation without absorption (Σ|φ_g|² = 1)
    assert dyn.intensity.sum() == pytest.approx(1.0, abs=1e-6)


def test_real_physics_pendellosung_starts_at_zero_and_stays_bounded():
    crystal = _real_physics()
    widget = PendellosungExplorer(crystal, hkl=(1, 0, 0), zone_axis=(0, 0, 1), max_thickness=1500, n_thickness=31)
    assert widget.error.value == "", widget.error.value
    curve = widget.curve
    assert curve.intensity.iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert 0 < curve.intensity.max() < 1
    direct = np.asarray(widget.figure.data[2].y)
    assert direct[0] == pytest.approx(1.0, abs=1e-9)
