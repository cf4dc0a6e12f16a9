"""Simulator checks that need a crystal: gemmi structure factors, kinematic limit, unitarity,
symmetry, Friedel's law and its breaking, inversion ≡ t → −t, and finite-difference gradients
through the whole pipeline (physics-notes §11 items 2–4 and 6)."""
from __future__ import annotations

import collections
import math

import gemmi
import numpy as np
import pytest
import torch

import edwidgets
from edwidgets import kinematic_pattern, simulate_pattern, structure_factors
from edwidgets.crystal import Crystal, Site
from edwidgets.physics.beams import BeamSet, orientation_from_zone_axis, reciprocal_points_within, rotation_matrix
from edwidgets.physics.bloch import propagate
from edwidgets.physics.constants import electron_wavelength, relativistic_gamma
from edwidgets.simulation import ScatteringModel, bloch_intensities

# Rutile TiO2 (P4_2/mnm): both sites on special positions, anisotropic U obeying the site symmetry.
RUTILE_CIF = """data_rutile
_cell_length_a 4.5937
_cell_length_b 4.5937
_cell_length_c 2.9587
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 42/m n m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
_atom_site_adp_type
Ti1 Ti 0 0 0 0.0060 Uani
O1 O 0.30478 0.30478 0 0.0070 Uani
loop_
_atom_site_aniso_label
_atom_site_aniso_U_11
_atom_site_aniso_U_22
_atom_site_aniso_U_33
_atom_site_aniso_U_12
_atom_site_aniso_U_13
_atom_site_aniso_U_23
Ti1 0.0065 0.0065 0.0046 0.0002 0 0
O1 0.0072 0.0072 0.0052 -0.0023 0 0
"""


def silicon() -> Crystal:
    return Crystal((5.431, 5.431, 5.431, 90, 90, 90), "F d -3 m:1", [Site("Si1", "Si", (0.0, 0.0, 0.0), u_iso=0.0)])


@pytest.fixture(scope="module")
def rutile_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cif") / "rutile.cif"
    path.write_text(RUTILE_CIF)
    return path


@pytest.fixture(scope="module")
def quartz() -> Crystal:
    return edwidgets.crystal.load_structure("quartz_P3221")


def gemmi_structure_factors(path, hkl, isotropic=False, u_iso=None):
    """gemmi's independent calculator, with occupancies corrected for special positions.

    ``isotropic`` drops the Uani so gemmi uses each site's Uiso (``u_iso``: label → value to use)."""
    small = gemmi.read_small_structure(str(path))
    n_ops = len(small.spacegroup.operations())
    images = collections.Counter(site.label for site in small.get_all_unit_cell_sites())
    for site in small.sites:
        site.occ *= images[site.label] / n_ops
        if isotropic:
            site.aniso = gemmi.SMat33d(0, 0, 0, 0, 0, 0)
            if u_iso is not None:
                site.u_iso = u_iso[site.label]
    calc = gemmi.StructureFactorCalculatorE(small.cell)
    return np.array([calc.calculate_sf_from_small_structure(small, [int(i) for i in h]) for h in hkl])


def make_isotropic(crystal: Crystal) -> Crystal:
    sites = [Site(s.label, s.element, s.frac, s.occupancy, s.u_iso, None) for s in crystal.sites]
    return Crystal(crystal.cell, crystal.space_group, sites)


@pytest.mark.parametrize("isotropic", [True, False])
def test_structure_factors_match_gemmi_rutile(rutile_path, isotropic):
    crystal = Crystal.from_cif(rutile_path)
    if isotropic:
        crystal = make_isotropic(crystal)
    hkl = reciprocal_points_within(crystal.reciprocal_basis(), 2.0)
    ours = structure_factors(crystal, hkl).numpy()
    ref = gemmi_structure_factors(rutile_path, hkl, isotropic=isotropic, u_iso={s.label: s.u_iso for s in crystal.sites})
    # gemmi keeps part of the anisotropic path in single precision (physics-notes §2)
    tolerance = 1e-6 if isotropic else 1e-4
    assert np.max(np.abs(ours - ref)) <= tolerance * np.max(np.abs(ref))
    strong = np.abs(ref) > 0.05 * np.abs(ref).max()
    assert np.max(np.abs(ours[strong] - ref[strong]) / np.abs(ref[strong])) <= 10 * tolerance


@pytest.mark.realdata
def test_structure_factors_match_gemmi_real_quartz_model(shared_data):
    path = shared_data / "quartz" / "enantiomer_1.cif"
    crystal = Crystal.from_cif(path)
    hkl = reciprocal_points_within(crystal.reciprocal_basis(), 1.6)
    ours = structure_factors(crystal, hkl).numpy()
    ref = gemmi_structure_factors(path, hkl)
    assert np.max(np.abs(ours - ref)) <= 1e-4 * np.max(np.abs(ref))
    iso = make_isotropic(crystal)
    iso_ours = structure_factors(iso, hkl).numpy()
    iso_ref = gemmi_structure_factors(path, hkl, isotropic=True, u_iso={s.label: s.u_iso for s in iso.sites})
    assert np.max(np.abs(iso_ours - iso_ref)) <= 1e-6 * np.max(np.abs(iso_ref))


def test_silicon_extinction_distances():
    """ξ_g = K/|U_g| for Si with B = 0 (physics-notes §1 sanity numbers)."""
    si = silicon()
    f = structure_factors(si, [[1, 1, 1], [2, 2, 0]]).abs().numpy()
    for kv, hkl_index, expected_nm in [(100, 0, 61.7), (100, 1, 76.2), (200, 1, 96.7)]:
        u = relativistic_gamma(kv) * f[hkl_index] / (math.pi * si.volume)
        xi_nm = (1 / electron_wavelength(kv)) / u / 10
        assert xi_nm == pytest.approx(expected_nm, rel=0.01)


def off_axis_orientation(crystal, seed=0):
    base = orientation_from_zone_axis(crystal.real_basis(), (1, 1, 1))
    rng = np.random.default_rng(seed)
    return rotation_matrix(rng.normal(size=3), math.radians(3.7)) @ base


@pytest.mark.parametrize("method", ["eigen", "matrix_exp"])
def test_unitarity_without_absorption(quartz, method):
    rot = off_axis_orientation(quartz)
    for normal in (None, (0.2, 0.1, 1.0)):
        df = simulate_pattern(quartz, orientation=rot, thickness=[100.0, 850.0, 2000.0], g_max=2.0, sg_max=0.03,
                              surface_normal=normal, method=method)
        totals = df.groupby("thickness")["intensity"].sum().to_numpy()
        np.testing.assert_allclose(totals, 1.0, atol=1e-12)


def test_absorption_removes_intensity_monotonically(quartz):
    rot = off_axis_orientation(quartz)
    kappa = 0.05
    totals = simulate_pattern(quartz, orientation=rot, thickness=[0.0, 2.0, 300.0, 900.0], absorption=kappa).groupby("thickness")["intensity"].sum()
    assert totals.iloc[0] == pytest.approx(1.0)
    assert 1.0 > totals.iloc[1] > totals.iloc[2] > totals.iloc[3] > 0.0
    # initial loss rate: d/dt Σ|φ|² = −(2π/K) κ U_0 at t = 0 (only the mean absorptive potential acts)
    f0 = structure_factors(quartz, [[0, 0, 0]]).real.item()
    u0 = relativistic_gamma(200) * f0 / (math.pi * quartz.volume)
    expected_loss = 2 * math.pi * 2.0 * kappa * u0 * electron_wavelength(200)
    assert 1 - totals.iloc[1] == pytest.approx(-math.expm1(-expected_loss), rel=1e-3)


@pytest.mark.parametrize("name", ["quartz_P3221", "silicon"])
def test_kinematic_limit_against_gemmi_structure_factors(name, tmp_path):
    """Thin crystals converge to I = (λγ|F|t/Ω)² sinc²(π t s) with gemmi's F (first Born approximation).

    The multiple-scattering error falls with t; what remains at t → 0 is the O(g_z/K) ~ 1e-3
    obliquity factor of the beam-normal boundary condition, which the simple formula omits.
    """
    crystal = silicon() if name == "silicon" else edwidgets.crystal.load_structure(name)
    rot = off_axis_orientation(crystal, seed=1)
    path = crystal.to_cif(tmp_path / "c.cif")
    lam, gam = electron_wavelength(200), relativistic_gamma(200)
    errors = []
    for t in (4.0, 1.0, 0.25):
        dyn = simulate_pattern(crystal, orientation=rot, thickness=t, g_max=1.6, sg_max=0.05)
        dyn = dyn[(dyn[["h", "k", "l"]] != 0).any(axis=1)]
        f_ref = np.abs(gemmi_structure_factors(path, dyn[["h", "k", "l"]].to_numpy()))
        s = dyn["excitation_error"].to_numpy()
        expected = (lam * gam * f_ref * t / crystal.volume) ** 2 * np.sinc(t * s) ** 2
        strong = expected > 1e-2 * expected.max()
        assert strong.sum() > 10
        errors.append(np.max(np.abs(dyn["intensity"].to_numpy()[strong] / expected[strong] - 1)))
        kin = kinematic_pattern(crystal, orientation=rot, thickness=t, g_max=1.6, sg_max=0.05)
        kin = kin[(kin[["h", "k", "l"]] != 0).any(axis=1)]
        np.testing.assert_allclose(kin["intensity"].to_numpy()[strong], expected[strong], rtol=1e-4)
    # multiple scattering adds a correction of relative order t/ξ: the error falls linearly with t
    assert errors[0] > 2.5 * errors[1] > 6 * errors[2]
    assert errors[2] < 1e-2


def intensity_map(df):
    return {(int(h), int(k), int(l)): i for h, k, l, i in df[["h", "k", "l", "intensity"]].itertuples(index=False)}


def test_threefold_equivalent_beams_equal_at_quartz_001(quartz):
    df = simulate_pattern(quartz, zone_axis=(0, 0, 1), thickness=600.0, g_max=1.6, sg_max=0.04)
    intensities = intensity_map(df)
    checked = 0
    for (h, k, l), value in intensities.items():
        image = (k, -h - k, l)  # 3-fold about c in hexagonal axes
        if image in intensities and value > 1e-6:
            assert intensities[image] == pytest.approx(value, rel=1e-8, abs=1e-12)
            checked += 1
    assert checked > 20


def test_friedel_law_centrosymmetric_and_broken_for_quartz(quartz):
    si = simulate_pattern(silicon(), zone_axis=(1, 1, 0), thickness=700.0, g_max=1.6, sg_max=0.03)
    si_map = intensity_map(si)
    pairs = [(key, (-key[0], -key[1], -key[2])) for key in si_map if key < (0, 0, 0) and si_map[key] > 1e-6]
    assert len(pairs) > 10
    for g, minus_g in pairs:
        assert si_map[minus_g] == pytest.approx(si_map[g], rel=1e-8)
    q = intensity_map(simulate_pattern(quartz, zone_axis=(0, 0, 1), thickness=700.0, g_max=1.6, sg_max=0.03))
    ratios = [abs(q[g] - q[(-g[0], -g[1], -g[2])]) / (q[g] + q[(-g[0], -g[1], -g[2])])
              for g in q if g[2] == 0 and any(g) and q[g] > 1e-4 and (-g[0], -g[1], -g[2]) in q]
    assert max(ratios) > 0.05  # dynamical breaking of Friedel's law in a non-centrosymmetric crystal


def test_inversion_equals_negative_thickness(quartz):
    """conj(U) ≡ t → −t (physics-notes §3): the enantiomorph at +t equals the structure at −t."""
    rot = torch.as_tensor(off_axis_orientation(quartz, seed=2))[None]
    inverted = quartz.inverted()
    hkl = reciprocal_points_within(quartz.reciprocal_basis(), 1.5)
    beams = BeamSet.from_hkl(hkl[:60])
    t = torch.tensor([450.0], dtype=torch.float64)
    model, model_inv = ScatteringModel(quartz), ScatteringModel(inverted)
    forward = bloch_intensities(model, beams, rot, -t)
    mirrored = bloch_intensities(model_inv, beams, rot, t)
    same_hand = bloch_intensities(model, beams, rot, t)
    torch.testing.assert_close(forward, mirrored, atol=1e-13, rtol=1e-10)
    assert (same_hand - mirrored).abs().max() > 1e-4  # the two hands are distinguishable


def pipeline_loss(crystal, params, beams, rot, thickness, method="eigen"):
    atoms = crystal.expand(params)
    intensity = bloch_intensities(ScatteringModel(crystal), beams, rot, thickness, atoms=atoms, method=method)
    weights = torch.linspace(1.0, 3.0, intensity.shape[-1], dtype=torch.float64)
    return (intensity * weights).sum()


@pytest.mark.parametrize("at_zone_axis", [False, True])
def test_pipeline_gradients_match_finite_differences(quartz, at_zone_axis):
    """Positions, anisotropic U and thickness, off axis and at the exact [001] zone axis: no NaN."""
    base = orientation_from_zone_axis(quartz.real_basis(), (0, 0, 1))
    rot_np = base if at_zone_axis else off_axis_orientation(quartz, seed=3)
    rot = torch.as_tensor(rot_np)[None]
    hkl = reciprocal_points_within(quartz.reciprocal_basis(), 1.2)
    g_lab = hkl @ (rot_np @ quartz.reciprocal_basis()).T
    s = -g_lab[:, 2] - (g_lab**2).sum(1) * electron_wavelength(200) / 2
    beams = BeamSet.from_hkl(hkl[np.abs(s) < 0.03])
    params = quartz.parameters(anisotropic=True)
    thickness = torch.tensor([620.0], dtype=torch.float64, requires_grad=True)
    loss = pipeline_loss(quartz, params, beams, rot, thickness)
    tensors = [params.positions, params.adp, thickness]
    grads = torch.autograd.grad(loss, tensors)
    for g in grads:
        assert torch.isfinite(g).all()
    rng = np.random.default_rng(4)
    for tensor, grad, step in zip(tensors, grads, (1e-6, 1e-7, 1e-3)):
        direction = torch.as_tensor(rng.normal(size=tensor.shape))
        with torch.no_grad():
            tensor += step * direction
            plus = pipeline_loss(quartz, params, beams, rot, thickness)
            tensor -= 2 * step * direction
            minus = pipeline_loss(quartz, params, beams, rot, thickness)
            tensor += step * direction
        numeric = (plus - minus).item() / (2 * step)
        analytic = (grad * direction).sum().item()
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    if at_zone_axis:
        # torch's own eigh backward breaks exactly here
        bad = torch.autograd.grad(pipeline_loss(quartz, params, beams, rot, thickness, "eigh_autograd"), [params.positions])[0]
        assert not torch.isfinite(bad).all() or (bad - grads[0]).abs().max() > 1e-3 * grads[0].abs().max()


def test_float32_option_close_to_float64(quartz):
    rot = off_axis_orientation(quartz, seed=5)
    d64 = simulate_pattern(quartz, orientation=rot, thickness=1500.0)
    d32 = simulate_pattern(quartz, orientation=rot, thickness=1500.0, dtype=torch.float32)
    assert np.max(np.abs(d64["intensity"] - d32["intensity"])) < 1e-4 * d64["intensity"].max()


def test_simulate_pattern_columns_and_batches(quartz):
    rots = np.stack([off_axis_orientation(quartz, seed=i) for i in range(3)])
    df = simulate_pattern(quartz, orientation=rots, thickness=[200.0, 400.0])
    for column in ("h", "k", "l", "intensity", "excitation_error", "x", "y", "thickness", "orientation"):
        assert column in df.columns
    assert set(df["orientation"]) == {0, 1, 2}
    assert len(df) == 3 * 2 * (len(df) // 6)
    # batching is exact: the batched call equals one call per orientation with the same beam set
    beams = BeamSet.from_hkl(reciprocal_points_within(quartz.reciprocal_basis(), 1.0))
    model = ScatteringModel(quartz)
    t = torch.tensor([200.0, 400.0], dtype=torch.float64)
    batched = bloch_intensities(model, beams, torch.as_tensor(rots), t)
    for i in range(3):
        single = bloch_intensities(model, beams, torch.as_tensor(rots[i : i + 1]), t)
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-13, rtol=1e-11)


def test_bad_arguments_get_clear_errors(quartz):
    with pytest.raises(ValueError, match="exactly one"):
        simulate_pattern(quartz)
    with pytest.raises(ValueError, match="thickness"):
        simulate_pattern(quartz, zone_axis=(0, 0, 1), thickness=float("nan"))
    with pytest.raises(ValueError, match="rotation"):
        simulate_pattern(quartz, orientation=np.ones((3, 3)))
    with pytest.raises(ValueError, match="g_max"):
        simulate_pattern(quartz, zone_axis=(0, 0, 1), g_max=-1)
    with pytest.raises(ValueError, match="absorption"):
        simulate_pattern(quartz, zone_axis=(0, 0, 1), absorption=0.1, method="eigen")
