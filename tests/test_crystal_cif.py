"""CIF reading/writing (checked by reading back with gemmi), clear errors on bad files,
enantiomorphs, start-model perturbation and comparison metrics."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from edwidgets.crystal import Crystal, Site, adp_frobenius, asu_rmsd
from edwidgets.errors import CrystalError, EdwidgetsError, InputFileError

from test_crystal_symmetry import c2c_with_axis, cspbbr3_like, quartz, quartz_source_setting

GOOD = """data_test
_cell_length_a 5.0
_cell_length_b 6.0
_cell_length_c 7.0
_cell_angle_alpha 90
_cell_angle_beta 100
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1 21/c 1'
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
-x,y+1/2,-z+1/2
-x,-y,-z
x,-y+1/2,z+1/2
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
_atom_site_occupancy
{atoms}
"""
ATOMS = "O1 O2- 0.1 0.2 0.3 0.01 1.0\nSi1 Si4+ 0.3 0.1 0.25 0.02 0.5"


def write(tmp_path, text, name="x.cif"):
    path = tmp_path / name
    path.write_text(text)
    return path


def gemmi_read(path):
    return gemmi.make_small_structure_from_block(gemmi.cif.read(str(path)).sole_block())


# --- reading --------------------------------------------------------------------------------------
def test_reads_charges_occupancy_and_ops(tmp_path):
    c = Crystal.from_cif(write(tmp_path, GOOD.format(atoms=ATOMS)))
    assert [s.element for s in c.sites] == ["O", "Si"]
    assert c.sites[1].occupancy == 0.5
    assert c.space_group.xhm() == "P 1 21/c 1"
    assert c.name == "test"
    assert c.is_centrosymmetric


def test_b_values_become_u(tmp_path):
    text = GOOD.format(atoms=ATOMS).replace("_atom_site_U_iso_or_equiv", "_atom_site_B_iso_or_equiv")
    c = Crystal.from_cif(write(tmp_path, text))
    assert c.sites[0].u_iso == pytest.approx(0.01 / (8 * np.pi ** 2))


def test_hall_only_and_hm_only(tmp_path):
    base = GOOD.format(atoms=ATOMS)
    ops_block = base[base.index("loop_\n_symmetry_equiv"):base.index("loop_\n_atom_site")]
    no_ops = base.replace(ops_block, "")
    hm = Crystal.from_cif(write(tmp_path, no_ops, "hm.cif"))
    assert hm.space_group.xhm() == "P 1 21/c 1"
    hall = no_ops.replace("_symmetry_space_group_name_H-M 'P 1 21/c 1'", "_space_group_name_Hall '-P 2ybc'")
    assert len(Crystal.from_cif(write(tmp_path, hall, "hall.cif")).symops) == 4
    # the listed operations win over a (here contradicting) H-M symbol: they are the file's own
    odd = base.replace("'P 1 21/c 1'", "'P 1'")
    assert len(Crystal.from_cif(write(tmp_path, odd, "odd.cif")).symops) == 4


def test_block_selection(tmp_path):
    text = "data_empty\n_cell_length_a 1\n" + GOOD.format(atoms=ATOMS)
    path = write(tmp_path, text)
    assert Crystal.from_cif(path).name == "test"
    assert Crystal.from_cif(path, block="test").name == "test"
    assert Crystal.from_cif(path, block=1).name == "test"
    with pytest.raises(InputFileError, match="no data block named"):
        Crystal.from_cif(path, block="nope")


# --- errors ---------------------------------------------------------------------------------------
def _without_symmetry(text: str) -> str:
    ops_block = text[text.index("loop_\n_symmetry_equiv"):text.index("loop_\n_atom_site")]
    return text.replace(ops_block, "").replace("_symmetry_space_group_name_H-M 'P 1 21/c 1'\n", "")


BAD_CASES = {
    "garbage": ("this is not a cif file {{{{ ;;; \n", "not a readable CIF"),
    "missing_cell": (GOOD.format(atoms=ATOMS).replace("_cell_length_b 6.0\n", ""), "_cell_length_b"),
    "unknown_element": (GOOD.format(atoms=ATOMS.replace("Si4+", "Xx")), "unknown element 'Xx'"),
    "missing_symmetry": (_without_symmetry(GOOD.format(atoms=ATOMS)), "missing symmetry"),
    "nan_coordinate": (GOOD.format(atoms=ATOMS.replace("0.3 0.1 0.25", "0.3 nan 0.25")), "non-finite coordinate"),
    "missing_coordinate": (GOOD.format(atoms=ATOMS.replace("0.3 0.1 0.25", "0.3 ? 0.25")), "non-finite coordinate"),
    "no_atoms": (GOOD.format(atoms="").split("loop_\n_atom_site_label")[0], "no data block has atom sites"),
    "bad_operation": (GOOD.format(atoms=ATOMS).replace("-x,-y,-z", "-x,-q,-z"), "cannot parse symmetry operation"),
    "not_a_group": (GOOD.format(atoms=ATOMS).replace("x,-y+1/2,z+1/2\n", ""), "not closed"),
    "nan_cell": (GOOD.format(atoms=ATOMS).replace("_cell_length_c 7.0", "_cell_length_c ?"), "_cell_length_c"),
    "bad_angles": (GOOD.format(atoms=ATOMS).replace("_cell_angle_beta 100", "_cell_angle_beta 190"), "angles"),
    "non_pd_uani": (GOOD.format(atoms=ATOMS) + "loop_\n_atom_site_aniso_label\n_atom_site_aniso_U_11\n"
                    "_atom_site_aniso_U_22\n_atom_site_aniso_U_33\n_atom_site_aniso_U_12\n_atom_site_aniso_U_13\n"
                    "_atom_site_aniso_U_23\nO1 0.01 0.01 0.01 0.05 0 0\n", "not positive definite"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_files_raise_clear_errors(tmp_path, case):
    text, message = BAD_CASES[case]
    path = write(tmp_path, text, f"{case}.cif")
    with pytest.raises(InputFileError) as info:
        Crystal.from_cif(path)
    assert isinstance(info.value, EdwidgetsError)
    assert f"{case}.cif" in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        Crystal.from_cif(tmp_path / "absent.cif")


def test_constructor_errors():
    with pytest.raises(CrystalError, match="no atoms"):
        Crystal((5, 5, 5, 90, 90, 90), "P 1", [])
    with pytest.raises(CrystalError, match="unknown space group"):
        Crystal((5, 5, 5, 90, 90, 90), "P 7", [Site("a", "C", (0, 0, 0))])
    with pytest.raises(CrystalError, match="unknown element"):
        Crystal((5, 5, 5, 90, 90, 90), "P 1", [Site("a", "Qq", (0, 0, 0))])
    with pytest.raises(CrystalError, match="duplicate"):
        Crystal((5, 5, 5, 90, 90, 90), "P 1", [Site("a", "C", (0, 0, 0)), Site("a", "C", (0.5, 0, 0))])
    with pytest.raises(CrystalError, match="finite"):
        Crystal((5, 5, 5, 90, 90, 90), "P 1", [Site("a", "C", (0, float("inf"), 0))])
    with pytest.raises(CrystalError, match="U_iso"):
        Crystal((5, 5, 5, 90, 90, 90), "P 1", [Site("a", "C", (0, 0, 0), u_iso=-0.01)])


# --- writing: read back with gemmi ----------------------------------------------------------------
@pytest.mark.parametrize("make", [quartz, quartz_source_setting, cspbbr3_like, c2c_with_axis],
                         ids=lambda f: f.__name__)
def test_cif_round_trip_through_gemmi(tmp_path, make):
    crystal = make()
    path = crystal.to_cif(tmp_path / "out.cif")
    small = gemmi_read(path)
    np.testing.assert_allclose(small.cell.parameters, crystal.cell, rtol=1e-12)
    assert {gemmi.Op(t).triplet() for t in small.symops} == set(crystal.symops)
    assert len(small.sites) == len(crystal.sites)
    orth = crystal.real_basis()
    frac_mat = np.linalg.inv(orth)
    for theirs, ours in zip(small.sites, crystal.sites):
        assert theirs.label == ours.label and theirs.element.name == ours.element
        np.testing.assert_allclose(theirs.fract.tolist(), ours.frac, atol=1e-12)
        assert theirs.occ == pytest.approx(ours.occupancy, abs=1e-12)
        assert theirs.u_iso == pytest.approx(ours.u_iso, abs=1e-12)
        if ours.u_aniso is None:
            assert not theirs.aniso.nonzero()
        else:
            a = theirs.aniso
            np.testing.assert_allclose([a.u11, a.u22, a.u33, a.u12, a.u13, a.u23], ours.u_aniso, atol=1e-12)
    again = Crystal.from_cif(path)
    assert again.symops == crystal.symops
    assert asu_rmsd(crystal, again) < 1e-12 and adp_frobenius(crystal, again) < 1e-14
    np.testing.assert_allclose(again.expand().frac.numpy(), crystal.expand().frac.numpy(), atol=1e-12)


def test_real_files_round_trip(tmp_path, shared_data):
    for rel in ("quartz/enantiomer_1.cif", "glycine/alpha_glycine.cif"):
        crystal = Crystal.from_cif(shared_data / rel)
        again = Crystal.from_cif(crystal.to_cif(tmp_path / "rt.cif"))
        assert again.symops == crystal.symops and again.cell == crystal.cell
        assert asu_rmsd(crystal, again) < 1e-12 and adp_frobenius(crystal, again) < 1e-14
        # the values are the file's own (special positions moved by < 1e-5 Å at most)
        small = gemmi_read(shared_data / rel)
        for s_ours, s_file in zip(crystal.sites, small.sites):
            d = np.array(s_ours.frac) - np.array(s_file.fract.tolist())
            assert np.linalg.norm(crystal.real_basis() @ d) < 1e-5


# --- enantiomorph -----------------------------------------------------------------------------------
def _structure_factors(crystal: Crystal, hkls):
    small = gemmi_read_string(crystal.to_cif_string())
    calc = gemmi.StructureFactorCalculatorX(small.cell)
    return np.array([calc.calculate_sf_from_small_structure(small, h) for h in hkls])


def gemmi_read_string(text):
    return gemmi.make_small_structure_from_block(gemmi.cif.read_string(text).sole_block())


def test_inverted_quartz_is_the_enantiomorph():
    q = quartz()
    inv = q.inverted()
    assert q.space_group.xhm() == "P 32 2 1" and inv.space_group.xhm() == "P 31 2 1"
    assert inv.multiplicities == q.multiplicities
    back = inv.inverted()
    assert back.space_group.xhm() == "P 32 2 1"
    assert asu_rmsd(q, back) < 1e-12
    # gemmi's (independent) structure factors: F_inv(h) = conj(F(h)), and F(h) is not real
    hkls = [(1, 0, 1), (1, 0, -1), (1, 1, 1), (2, 0, 3), (1, 2, 2)]
    f, f_inv = _structure_factors(q, hkls), _structure_factors(inv, hkls)
    np.testing.assert_allclose(f_inv, np.conj(f), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(f.imag)) > 1.0
    # the Cartesian positions are mirrored through the origin (mod lattice)
    x = np.array([s.frac for s in q.sites])
    y = np.array([s.frac for s in inv.sites])
    d = x + y
    assert np.allclose(d - np.round(d), 0, atol=1e-12)


def test_inverted_noncentrosymmetric_achiral_group_keeps_setting():
    sites = [Site("a", "N", (0.1, 0.2, 0.3), u_iso=0.01), Site("b", "C", (0.3, 0.1, 0.05), u_iso=0.01)]
    c = Crystal((5, 6, 7, 90, 90, 90), "P n a 21", sites)
    inv = c.inverted()
    assert inv.space_group.xhm() == c.space_group.xhm()
    hkls = [(1, 1, 1), (2, 1, 3), (0, 1, 1)]
    np.testing.assert_allclose(np.abs(_structure_factors(inv, hkls)), np.abs(_structure_factors(c, hkls)),
                               rtol=1e-5)


# --- perturbation and metrics --------------------------------------------------------------------
def test_perturbed_respects_special_positions_and_scales_u():
    c = cspbbr3_like()
    p = c.perturbed(0.2, seed=7)
    assert p.multiplicities == c.multiplicities
    assert p.sites[1].frac == c.sites[1].frac  # Pb on an inversion centre cannot move
    assert p.sites[0].frac[1] == pytest.approx(0.25) and p.sites[2].frac[1] == pytest.approx(0.25)
    orth = c.real_basis()
    for a, b, k in zip(c.sites, p.sites, [2, 0, 2, 3]):
        d = np.linalg.norm(orth @ (np.array(b.frac) - np.array(a.frac)))
        assert d <= 0.2 * np.sqrt(k) + 1e-12
    assert 0.05 < asu_rmsd(c, p) < 0.35
    np.testing.assert_allclose(p.sites[3].u_aniso, np.array(c.sites[3].u_aniso) * 1.2, rtol=1e-12)
    assert p.sites[3].u_iso == pytest.approx(c.sites[3].u_iso * 1.2)
    # reproducible, and different seeds differ
    assert c.perturbed(0.2, seed=7).sites == p.sites
    assert c.perturbed(0.2, seed=8).sites != p.sites
    fixed = c.perturbed(0.2, seed=7, u_start=0.05)
    assert all(s.u_aniso is None and s.u_iso == 0.05 for s in fixed.sites)
    assert [s.frac for s in fixed.sites] == [s.frac for s in p.sites]
    iso = c.perturbed(0.1, seed=1, u_scale=1.0, isotropic=True)
    assert all(s.u_aniso is None for s in iso.sites)
    assert iso.sites[3].u_iso == pytest.approx(c.sites[3].u_iso)


def test_metrics_nearest_image_and_values():
    c = c2c_with_axis()
    moved = c.replace(sites=[Site(s.label, s.element, (s.frac[0] + 1, s.frac[1] - 2, s.frac[2]), s.occupancy,
                                  s.u_iso, s.u_aniso) for s in c.sites])
    assert asu_rmsd(c, moved) < 1e-12
    # one site moved 0.1 Å along b (the free direction of the 2-fold site): RMS over 2 sites
    shifted = [Site(c.sites[0].label, "Zn", (0.0, c.sites[0].frac[1] + 0.1 / 7.0, 0.25), u_iso=0.015), c.sites[1]]
    d = c.replace(sites=shifted)
    assert asu_rmsd(c, d) == pytest.approx(np.sqrt(0.1 ** 2 / 2), rel=1e-9)
    # isotropic U 0.012 -> 0.015: ||ΔU I||_F = 0.003 √3 on one of two sites
    assert adp_frobenius(c, d) == pytest.approx(np.sqrt(3 * 0.003 ** 2 / 2), rel=1e-9)
    with pytest.raises(CrystalError):
        asu_rmsd(c, quartz())


def test_summary_and_repr():
    text = quartz().summary()
    assert "P 32 2 1" in text and "Si" in text and "9 atoms" in text
    assert "quartz" in repr(quartz())
