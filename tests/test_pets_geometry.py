"""Frame geometry from PETS2 numbers.

The proof of the convention is geometric and independent of any simulator: the reflections PETS
lists for a frame must lie (nearly) on the Ewald sphere at that frame's orientation. The dynamical
lists (quartz, glycine_dyn) hold every reflection swept by a 2-2.5° wide virtual frame, so their
|s_g| at the frame *centre* is up to ~lever arm × half-width (median ≈ 0.016-0.018 Å⁻¹, median
R_Sg ≈ 1.1-1.2); wrong conventions are worse by factors (beam sign: mean s ≈ −|g|²/K;
goniometer azimuth on glycine: ~15×).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from edwidgets.experiment.geometry import (
    PETS_TO_LAB,
    beam_zone_axes,
    cell_basis_from_parameters,
    excitation_error_rates,
    excitation_errors,
    frame_angles,
    frame_orientations,
    goniometer_rotations,
    reflection_excitation_errors,
    rotation_axis,
)
from edwidgets.experiment.pets import PetsData, read_pets
from edwidgets.physics.beams import rotation_matrix


# --- helpers ------------------------------------------------------------------------------------
def per_reflection(data: PetsData, orientations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s_g, |g|) of every reflection row at its frame's orientation, for given [F,3,3] orientations."""
    basis = cell_basis_from_parameters(data.cell)
    b_cart = np.linalg.inv(basis).T
    row = {int(f): i for i, f in enumerate(data.frame_ids)}
    index = np.array([row[int(f)] for f in data.reflections["frame"]])
    s = np.empty(len(index))
    g_len = np.empty(len(index))
    for i in np.unique(index):
        pick = index == i
        hkl = data.hkl[pick]
        s[pick] = excitation_errors(orientations[i], b_cart, hkl, data.wavelength)
        g_len[pick] = np.linalg.norm(hkl @ (orientations[i] @ b_cart).T, axis=1)
    return s, g_len


def frame_medians(data: PetsData, s: np.ndarray) -> pd.Series:
    return pd.Series(np.abs(s)).groupby(data.reflections["frame"].to_numpy()).median()


def wrong_azimuth(data: PetsData) -> np.ndarray:
    """Rotation about detector x while the crystal is set by R_z(ω) UB: the axis at 0° instead of ω."""
    f = data.frames
    rx = goniometer_rotations(f["alpha"], 0.0, 0.0)
    rzy = goniometer_rotations(0.0, f["beta"], f["omega"])  # R_z(ω) R_y(β)
    return PETS_TO_LAB @ rx @ rzy @ data.ub @ cell_basis_from_parameters(data.cell).T


def wrong_beam_sign(data: PetsData) -> np.ndarray:
    """PETS's frame taken as the lab frame unchanged (beam along +z of PETS)."""
    f = data.frames
    return goniometer_rotations(f["alpha"], f["beta"], f["omega"]) @ data.ub @ cell_basis_from_parameters(data.cell).T


DYNAMICAL = ["quartz/quartz.cif_pets", "glycine/glycine_dyn.cif_pets"]


@pytest.fixture(scope="module")
def datasets(shared_data):
    return {name: read_pets(shared_data / name, empty_frames="ignore")
            for name in DYNAMICAL + ["glycine/glycine.cif_pets"]}


# --- Ewald condition on real data ---------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name", DYNAMICAL)
def test_listed_reflections_are_on_the_ewald_sphere(datasets, name):
    data = datasets[name]
    s = reflection_excitation_errors(data)
    s_check, g_len = per_reflection(data, frame_orientations(data))
    np.testing.assert_allclose(s, s_check, atol=1e-12)
    assert np.median(np.abs(s)) < 0.02
    assert frame_medians(data, s).max() < 0.025
    # Curvature decides the beam direction: the signed mean vanishes in every |g| shell.
    for low, high in [(0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]:
        shell = (g_len >= low) & (g_len < high)
        assert abs(s[shell].mean()) < 0.004, (low, high, s[shell].mean())
    # In units of the sweep over half a frame (R_Sg of Klar et al.), the typical reflection is ~1.
    half_width = np.radians(data.frame_half_widths_deg)
    row = {int(f): i for i, f in enumerate(data.frame_ids)}
    sweep = np.abs(excitation_error_rates(data)) * half_width[[row[int(f)] for f in data.reflections["frame"]]]
    assert np.median(np.abs(s) / sweep) < 1.5


@pytest.mark.realdata
@pytest.mark.parametrize("name", DYNAMICAL + ["glycine/glycine.cif_pets"])
def test_wrong_beam_sign_is_visible(datasets, name):
    data = datasets[name]
    s_right, g_len = per_reflection(data, frame_orientations(data))
    s_wrong, _ = per_reflection(data, wrong_beam_sign(data))
    far = g_len > 1.2
    assert s_wrong[far].mean() < -0.03  # ≈ −|g|²/K
    assert np.median(np.abs(s_wrong)) > 1.5 * np.median(np.abs(s_right))


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["glycine/glycine_dyn.cif_pets", "glycine/glycine.cif_pets"])
def test_wrong_goniometer_azimuth_is_visible_on_glycine(datasets, name):
    data = datasets[name]
    assert data.rotation_axis_deg == pytest.approx(230.391)
    s_right, _ = per_reflection(data, frame_orientations(data))
    s_wrong, _ = per_reflection(data, wrong_azimuth(data))
    assert np.median(np.abs(s_right)) < 0.025
    assert np.median(np.abs(s_wrong)) > 5 * np.median(np.abs(s_right))
    assert frame_medians(data, s_wrong).max() > 0.3


@pytest.mark.realdata
@pytest.mark.parametrize("name", DYNAMICAL + ["glycine/glycine.cif_pets"])
def test_beam_is_antiparallel_to_pets_zone_axis(datasets, name):
    data = datasets[name]
    uvw = data.frames[["u", "v", "w"]].to_numpy()
    np.testing.assert_allclose(beam_zone_axes(data), -uvw, atol=0.01)


@pytest.mark.realdata
def test_orientations_keep_ub_metric(datasets):
    quartz = datasets["quartz/quartz.cif_pets"]
    R = frame_orientations(quartz)
    b_cart = np.linalg.inv(cell_basis_from_parameters(quartz.cell)).T
    for i, row in enumerate(quartz.frames.itertuples()):
        g_pets = goniometer_rotations(row.alpha, row.beta, row.omega) @ quartz.ub
        np.testing.assert_allclose(R[i] @ b_cart, PETS_TO_LAB @ g_pets, atol=1e-14)
    assert np.linalg.det(R[0]) == pytest.approx(1.033, abs=0.002)  # PETS's UB cell is ~1 % smaller
    glycine = datasets["glycine/glycine_dyn.cif_pets"]
    Rg = frame_orientations(glycine)
    np.testing.assert_allclose(Rg @ np.swapaxes(Rg, -1, -2), np.broadcast_to(np.eye(3), Rg.shape), atol=2e-4)


# --- conventions without data -------------------------------------------------------------------
def synthetic(alphas=(-20.0, 0.0, 35.0), omega=230.0, beta=0.3, cell=(5.0, 6.0, 7.0, 80.0, 100.0, 95.0)) -> PetsData:
    basis = cell_basis_from_parameters(cell)
    u = rotation_matrix((1.0, 2.0, 3.0), 0.7)
    ub = u @ np.linalg.inv(basis).T  # UB of a crystal with orientation u at zero angles
    frames = pd.DataFrame({"frame": np.arange(1, len(alphas) + 1), "alpha": alphas, "beta": beta,
                           "omega": omega, "scale": 1.0, "precession_angle": 0.5})
    reflections = pd.DataFrame({"h": [1, 0], "k": [0, 1], "l": [0, 0], "I": [1.0, 1.0], "sigma": [0.1, 0.1], "frame": [1, 2]})
    return PetsData(path=None, wavelength=0.0251, cell=cell, ub=ub, geometry="continuous", precession_angle_deg=None,
                    rotation_axis_deg=omega, mosaicity_deg=None, details={}, frames=frames, reflections=reflections)


def test_orientation_is_a_proper_rotation_with_the_documented_axis():
    data = synthetic()
    R = frame_orientations(data)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    axis = rotation_axis(data)
    np.testing.assert_allclose(axis, [math.cos(math.radians(230.0)), -math.sin(math.radians(230.0)), 0.0], atol=1e-12)
    # increasing α = right-handed turn about the axis, applied in the lab
    delta = 55.0
    np.testing.assert_allclose(R[2], rotation_matrix(axis, math.radians(delta)) @ R[0], atol=1e-12)
    np.testing.assert_allclose(frame_angles(data), [-20.0, 0.0, 35.0])


def test_cell_basis_argument_keeps_g_lab():
    data = synthetic()
    other = rotation_matrix((0.0, 1.0, 1.0), 0.4) @ cell_basis_from_parameters(data.cell)  # another Cartesian setting
    g_default = frame_orientations(data) @ np.linalg.inv(cell_basis_from_parameters(data.cell)).T
    g_other = frame_orientations(data, other) @ np.linalg.inv(other).T
    np.testing.assert_allclose(g_default, g_other, atol=1e-14)


def test_excitation_error_formula_and_torch():
    wavelength = 0.025
    k = 1 / wavelength
    # A vector on the sphere through the origin with the centre at −K ẑ: g = (x, 0, −K + sqrt(K² − x²)).
    x = 0.8
    on_sphere = np.array([[x, 0.0, -k + math.sqrt(k * k - x * x)]])
    assert abs(excitation_errors(np.eye(3), np.eye(3), on_sphere, wavelength)[0]) < 1e-12
    outside = on_sphere + [[0.0, 0.0, 0.01]]  # moved along the beam, away from the centre −K ẑ
    assert excitation_errors(np.eye(3), np.eye(3), outside, wavelength)[0] == pytest.approx(-0.01, abs=1e-5)
    R = torch.tensor(frame_orientations(synthetic()), requires_grad=True)
    b = torch.tensor(np.linalg.inv(cell_basis_from_parameters(synthetic().cell)).T)
    hkl = torch.tensor([[1, 0, 0], [2, -1, 3]])
    s = excitation_errors(R, b, hkl, wavelength)
    assert s.shape == (3, 2)
    np.testing.assert_allclose(s.detach().numpy(), excitation_errors(R.detach().numpy(), b.numpy(), hkl.numpy(), wavelength), atol=1e-14)
    s.sum().backward()
    assert R.grad is not None and torch.isfinite(R.grad).all()


def test_excitation_error_rate_matches_finite_difference():
    data = synthetic()
    s0 = reflection_excitation_errors(data)
    step = 1e-6
    moved = PetsData(**{**data.__dict__, "frames": data.frames.assign(alpha=data.frames["alpha"] + step)})
    numeric = (reflection_excitation_errors(moved) - s0) / math.radians(step)
    np.testing.assert_allclose(excitation_error_rates(data), numeric, rtol=1e-5, atol=1e-8)
