"""Real data through the whole geometry chain: quartz (both hands, before/after preparation) and
glycine (rotation axis at 230°). Numbers are printed (pytest -s); the full-quality run is
benchmarks/quartz_preparation.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edwidgets.crystal import Crystal
from edwidgets.experiment.forward import ForwardModel
from edwidgets.experiment.pets_experiment import experiment_from_pets
from edwidgets.experiment.preparation import (DEFAULT_MAX_ANGLE_DEG, prepare, refine_frame_orientation, rotation_angle_deg,
                                              thickness_grid)

QUARTZ_SETTINGS = dict(g_max=1.6, resolution=1.6, sg_max=0.01, selection=(0.9, 0.0015))
COARSE_GRID = thickness_grid(200.0, 1400.0, 20.0)




pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quartz(shared_data):
    experiment = experiment_from_pets(shared_data / "quartz" / "quartz.cif_pets")
    published = Crystal.from_cif(shared_data / "quartz" / "enantiomer_1.cif")
    return experiment, published


@pytest.fixture(scope="module")
def quartz_subset(quartz):
    """Every 5th frame (20 of 99) at 16 samples per frame: the cheap form of the quartz checks."""
    experiment, published = quartz
    return experiment.subset_frames(np.arange(0, experiment.n_frames, 5)), published


def test_quartz_is_read_with_the_published_geometry(quartz):
    experiment, published = quartz
    assert experiment.n_frames == 99
    assert len(experiment.reflections) == 6666
    assert experiment.geometry == "continuous"
    assert experiment.frame_angle_deg.min() == pytest.approx(-49.2, abs=0.1)
    assert experiment.frame_angle_deg.max() == pytest.approx(49.2, abs=0.3)
    assert np.all(experiment.half_width_deg > 0)
    assert experiment.wavelength == pytest.approx(0.0251, abs=2e-4)


def test_quartz_hand_and_preparation_cheap(quartz_subset):
    """Thickness search on 20 frames: the published P3₂21 model fits clearly better than P3₁21, and
    the search and a few frames' orientation refinement lower the residuals."""
    experiment, published = quartz_subset
    reports = {}
    for label, crystal in (("P3_2 21", published), ("P3_1 21", published.inverted())):
        forward = ForwardModel(experiment, crystal, n_samples=16, **QUARTZ_SETTINGS)
        before = forward.report(450.0)
        prep = prepare(forward, refine_orientation=False, grid=COARSE_GRID)
        after = forward.report(prep.thickness)
        reports[label] = (before, after, prep)
        print(f"\nquartz 20 frames, {label}: before (t = 450 Å) {before}\n  after thickness search "
              f"(global {prep.global_thickness:.0f} Å, per-frame median {np.median(prep.thickness):.0f} Å) {after}")
        assert after.wr_all < before.wr_all
        assert after.n_all == before.n_all and after.n_obs == before.n_obs
    right, wrong = reports["P3_2 21"][1], reports["P3_1 21"][1]
    # Table 3 of the paper: the wrong hand is clearly worse (measured: wR_all 10.4 vs 9.4 %, R_obs 9.6 vs 8.1 %)
    assert wrong.wr_all > 1.07 * right.wr_all
    assert wrong.r_obs > 1.1 * right.r_obs
    assert right.wr_all < 0.15 and right.r_obs < 0.12
    assert 200 < right.n_obs < right.n_all


def test_quartz_orientation_refinement_improves_frames(quartz_subset):
    experiment, published = quartz_subset
    forward = ForwardModel(experiment, published, n_samples=12, **QUARTZ_SETTINGS)
    prep = prepare(forward, grid=COARSE_GRID, frames=[3, 10])
    print(f"\nquartz frame wR before/after orientation refinement: {prep.wr_before[[3, 10]]} -> {prep.wr_after[[3, 10]]}")
    assert np.all(prep.wr_after[[3, 10]] <= prep.wr_before[[3, 10]])
    assert prep.wr_after[[3, 10]].sum() < 0.95 * prep.wr_before[[3, 10]].sum()
    untouched = [f for f in range(experiment.n_frames) if f not in (3, 10)]
    assert np.allclose(prep.rotations[untouched], np.eye(3))
    for f in (3, 10):  # proper small rotations
        r = prep.rotations[f]
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-10) and np.linalg.det(r) == pytest.approx(1.0)
        # each of the three angles is bounded by ±0.5° (DEFAULT_MAX_ANGLE_DEG)
        assert rotation_angle_deg(r) <= DEFAULT_MAX_ANGLE_DEG * np.sqrt(3) + 1e-9


def test_quartz_orientation_bound_is_active(quartz_subset):
    """Frame 10 of the subset: unbounded Nelder–Mead wanders about 1° (3.6° on one frame in a
    full preparation), fitting the frame's ~20 intensities with the tilt; the bounded search stays inside its box and still
    improves the frame."""
    experiment, published = quartz_subset
    forward = ForwardModel(experiment, published, n_samples=12, **QUARTZ_SETTINGS)
    thickness = float(prepare(forward, refine_orientation=False, grid=COARSE_GRID).thickness[10])
    free, before, _ = refine_frame_orientation(forward, 10, thickness, max_angle_deg=None)
    bounded, before_b, after_b = refine_frame_orientation(forward, 10, thickness, max_angle_deg=0.2)
    print(f"\nframe 10: unbounded {rotation_angle_deg(free):.2f}°, bounded {rotation_angle_deg(bounded):.2f}°, "
          f"wR {before_b:.4f} -> {after_b:.4f}")
    assert rotation_angle_deg(free) > 0.6  # measured 0.97° here (3.6° in a full preparation)
    assert rotation_angle_deg(bounded) <= 0.2 * np.sqrt(3) + 1e-9
    assert after_b < before_b
    with pytest.raises(ValueError):
        refine_frame_orientation(forward, 10, thickness, max_angle_deg=0.0)


@pytest.mark.slow
def test_quartz_full_preparation_both_hands(quartz):
    """All frames, 24 samples, orientation refinement of every 4th frame, 10 Å grid."""
    experiment, published = quartz
    reports = {}
    for label, crystal in (("P3_2 21", published), ("P3_1 21", published.inverted())):
        forward = ForwardModel(experiment, crystal, n_samples=24, **QUARTZ_SETTINGS)
        before = forward.report(450.0)
        prep = prepare(forward, grid=thickness_grid(100.0, 2000.0, 10.0), frames=range(0, 99, 4))
        after = forward.report(prep.thickness, prep.rotations)
        reports[label] = after
        print(f"\nquartz 99 frames, {label}: before {before}\n  after {after}")
        assert after.wr_all < before.wr_all and after.r_obs < before.r_obs
    assert reports["P3_1 21"].wr_all > 1.1 * reports["P3_2 21"].wr_all


def test_glycine_is_read_and_scored(shared_data):
    path = shared_data / "glycine" / "glycine_dyn.cif_pets"
    experiment = experiment_from_pets(path)
    crystal = Crystal.from_cif(shared_data / "glycine" / "alpha_glycine.cif")
    assert experiment.metadata["rotation_axis_deg"] == pytest.approx(230.391, abs=1e-3)
    # the goniometer axis lies in the image plane (its azimuth in the lab convention and the Ewald
    # conditions of every frame are checked in test_pets_geometry.py)
    axis = experiment.rotation_axis
    assert abs(axis[2]) < 1e-6 and np.linalg.norm(axis) == pytest.approx(1.0)
    forward = ForwardModel(experiment, crystal, g_max=1.2, resolution=1.2, sg_max=0.01, n_samples=8, selection=(0.9, 0.0015))
    prep = prepare(forward, refine_orientation=False, grid=thickness_grid(100.0, 2000.0, 50.0))
    report = forward.report(prep.global_thickness)
    print(f"\nglycine ({experiment.n_frames} frames, {forward.n_reflections} scored, beams/frame mean "
          f"{forward.beam_counts().mean():.0f} max {forward.beam_counts().max()}), t = {prep.global_thickness:.0f} Å: {report}")
    assert np.isfinite([report.r_obs, report.wr_all, report.wr_f]).all()
    assert 100 < report.n_obs <= report.n_all <= len(experiment.reflections)
    # a sensible fit: far from random (R of unrelated intensities is ~50-60 %)
    assert report.r_obs < 0.35 and report.wr_all < 0.45


def test_fixed_rows_keep_the_selection_after_orientation_changes(quartz_subset):
    """``rows=`` scores exactly the given reflections: after rotating every frame by 0.4° the
    Klar selection would change, the fixed rows do not (same N for every model and stage)."""
    from edwidgets.experiment.forward import small_rotation

    experiment, published = quartz_subset
    base = ForwardModel(experiment, published, n_samples=4, **QUARTZ_SETTINGS)
    turn = small_rotation(torch.tensor(np.radians([0.4, -0.4, 0.2]))).numpy()
    rotated = experiment.with_orientations(np.asarray(experiment.orientations) @ turn)
    reselected = ForwardModel(rotated, published, n_samples=4, **QUARTZ_SETTINGS)
    fixed = ForwardModel(rotated, published, n_samples=4, rows=base.rows_in_data, **QUARTZ_SETTINGS)
    assert not np.array_equal(reselected.rows_in_data, base.rows_in_data)
    assert np.array_equal(fixed.rows_in_data, base.rows_in_data)
    assert fixed.observations.n_obs == base.observations.n_obs
    for plan in fixed.plans:  # every scored reflection has a beam in its frame's (rotated) beam set
        hkl = fixed.hkl[plan.rows.numpy()]
        assert np.array_equal(plan.beams.hkl[plan.beam_of_row.numpy()], hkl)
    with pytest.raises(Exception, match="rows must lie"):
        ForwardModel(rotated, published, n_samples=4, rows=[len(experiment.reflections)], **QUARTZ_SETTINGS)
