"""Symmetry expansion, special positions and differentiability of the asymmetric-unit parameters.

Expansions are checked against gemmi (independent code) and against the group axioms, never
against the module itself."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest
import torch

from edwidgets.crystal import Crystal, Site

# alpha-quartz, Levien, Prewitt & Weidner, Am. Mineral. 65, 920 (1980), P3_2 21, in the paper's
# setting (origin shifted by c/3 from the International Tables one): its own operations.
QUARTZ_CELL = (4.916, 4.916, 5.4054, 90, 90, 120)
QUARTZ_SOURCE_OPS = "x,y,z; y,x,2/3-z; -y,x-y,2/3+z; -x,-x+y,1/3-z; -x+y,-x,1/3+z; x-y,-y,-z"
QUARTZ_SITES = [
    Site("Si", "Si", (0.4697, 0.0, 0.0), u_aniso=(0.00854, 0.00716, 0.00725, 0.00358, -0.00001, -0.00002)),
    Site("O", "O", (0.4135, 0.2669, 0.1191), u_aniso=(0.01745, 0.01322, 0.01229, 0.00973, -0.00291, -0.00408)),
]


def quartz_source_setting() -> Crystal:
    return Crystal(QUARTZ_CELL, QUARTZ_SOURCE_OPS, QUARTZ_SITES, name="quartz_src")


def quartz() -> Crystal:
    """The same structure in the tabulated setting: z -> z - 1/3."""
    sites = [Site(s.label, s.element, (s.frac[0], s.frac[1], s.frac[2] - 1 / 3), u_aniso=s.u_aniso)
             for s in QUARTZ_SITES]
    return Crystal(QUARTZ_CELL, "P 32 2 1", sites, name="quartz")


def cspbbr3_like() -> Crystal:
    # Pnma perovskite: Cs and Br1 on mirrors (4c), Pb on an inversion centre (4b), Br2 general (8d).
    sites = [
        Site("Cs", "Cs", (0.0438, 0.25, 0.9896), u_aniso=(0.040, 0.033, 0.045, 0.0, 0.003, 0.0)),
        Site("Pb", "Pb", (0.0, 0.0, 0.5), u_aniso=(0.014, 0.015, 0.016, 0.0002, -0.0003, 0.0001)),
        Site("Br1", "Br", (0.4945, 0.25, 0.0610), u_aniso=(0.032, 0.014, 0.040, 0.0, -0.001, 0.0)),
        Site("Br2", "Br", (0.2960, 0.0305, 0.7037), u_aniso=(0.025, 0.035, 0.027, 0.002, -0.006, 0.004)),
    ]
    return Crystal((8.244, 11.735, 8.198, 90, 90, 90), "P n m a", sites, name="pnma")


def c2c_with_axis() -> Crystal:
    # C2/c with a site on the 2-fold axis (0, y, 1/4) and a general site: tests centring translations.
    sites = [Site("Zn", "Zn", (0.0, 0.1234, 0.25), u_iso=0.012),
             Site("O", "O", (0.1111, 0.2222, 0.3333), u_aniso=(0.02, 0.015, 0.018, 0.001, 0.004, -0.002))]
    return Crystal((10.0, 7.0, 9.0, 90, 105.0, 90), "C 1 2/c 1", sites, name="c2c")


def cubic_fm3m() -> Crystal:
    sites = [Site("Na", "Na", (0, 0, 0), u_iso=0.01), Site("Cl", "Cl", (0.5, 0.5, 0.5), u_iso=0.012),
             Site("X", "O", (0.2, 0.2, 0.2), occupancy=0.1, u_iso=0.02)]
    return Crystal((5.64, 5.64, 5.64, 90, 90, 90), "F m -3 m", sites, name="fm3m")


SYNTHETIC = [quartz, quartz_source_setting, cspbbr3_like, c2c_with_axis, cubic_fm3m]


def gemmi_cell_sites(crystal: Crystal) -> list[tuple[str, np.ndarray]]:
    """gemmi's own expansion of the same structure (read from our CIF text)."""
    small = gemmi.make_small_structure_from_block(gemmi.cif.read_string(crystal.to_cif_string()).sole_block())
    return [(s.element.name, np.array(s.fract.tolist())) for s in small.get_all_unit_cell_sites()]


def same_point(a: np.ndarray, b: np.ndarray, orth: np.ndarray, tol: float = 1e-5) -> bool:
    d = a - b
    d -= np.round(d)
    return float(np.linalg.norm(orth @ d)) < tol


def match_sets(ours: list[tuple[str, np.ndarray]], theirs: list[tuple[str, np.ndarray]], orth) -> None:
    assert len(ours) == len(theirs)
    used = set()
    for el, x in ours:
        hits = [j for j, (el2, y) in enumerate(theirs) if el2 == el and same_point(x, y, orth) and j not in used]
        assert len(hits) == 1, f"{el} at {x} has {len(hits)} matches in gemmi's expansion"
        used.add(hits[0])


# --- counts and free coordinates -----------------------------------------------------------------
def test_quartz_special_position_counts():
    q = quartz()
    assert q.multiplicities == (3, 6)
    assert q.site_symmetry(0).n_free == 1 and q.site_symmetry(1).n_free == 3
    params = q.parameters()
    assert params.positions.numel() == 4
    assert len(q.expand()) == 9
    assert not q.is_centrosymmetric


def test_non_tabulated_setting_keeps_its_operations():
    q = quartz_source_setting()
    assert isinstance(q.space_group, gemmi.GroupOps)
    assert set(q.symops) == {gemmi.Op(t.strip()).triplet() for t in QUARTZ_SOURCE_OPS.split(";")}
    assert q.multiplicities == (3, 6)
    assert isinstance(quartz().space_group, gemmi.SpaceGroup)


def test_real_quartz_file(shared_data):
    q = Crystal.from_cif(shared_data / "quartz" / "enantiomer_1.cif")
    assert q.multiplicities == (3, 6)
    assert [q.site_symmetry(i).n_free for i in range(2)] == [1, 3]
    assert q.space_group.xhm() == "P 32 2 1"
    small = gemmi.make_small_structure_from_block(gemmi.cif.read(str(shared_data / "quartz" / "enantiomer_1.cif")).sole_block())
    theirs = [(s.element.name, np.array(s.fract.tolist())) for s in small.get_all_unit_cell_sites()]
    atoms = q.expand()
    ours = [(el, x) for el, x in zip(atoms.elements, atoms.frac.numpy())]
    match_sets(ours, theirs, q.real_basis())


def test_real_glycine_file_nonstandard_setting(shared_data):
    path = shared_data / "glycine" / "alpha_glycine.cif"
    g = Crystal.from_cif(path)
    assert len(g.symops) == 4
    assert g.space_group.xhm() == "P 1 21/n 1"
    assert g.is_centrosymmetric
    assert set(g.symops) == {gemmi.Op(t).triplet() for t in
                             ["x,y,z", "-x,-y,-z", "-x+1/2,y+1/2,-z+1/2", "x+1/2,-y+1/2,z+1/2"]}
    small = gemmi.make_small_structure_from_block(gemmi.cif.read(str(path)).sole_block())
    theirs = [(s.element.name, np.array(s.fract.tolist())) for s in small.get_all_unit_cell_sites()]
    atoms = g.expand()
    assert len(atoms) == 40
    match_sets(list(zip(atoms.elements, atoms.frac.numpy())), theirs, g.real_basis())


@pytest.mark.parametrize("make", SYNTHETIC, ids=lambda f: f.__name__)
def test_expansion_matches_gemmi(make):
    crystal = make()
    atoms = crystal.expand()
    match_sets(list(zip(atoms.elements, atoms.frac.numpy())), gemmi_cell_sites(crystal), crystal.real_basis())
    frac = atoms.frac.numpy()
    assert np.all(frac >= -1e-9) and np.all(frac < 1 + 1e-9)


def test_expected_multiplicities():
    assert cspbbr3_like().multiplicities == (4, 4, 4, 8)
    assert [cspbbr3_like().site_symmetry(i).n_free for i in range(4)] == [2, 0, 2, 3]
    assert c2c_with_axis().multiplicities == (4, 8)
    assert c2c_with_axis().site_symmetry(0).n_free == 1
    assert cubic_fm3m().multiplicities == (4, 4, 32)
    assert [cubic_fm3m().site_symmetry(i).n_free for i in range(3)] == [0, 0, 1]


def test_near_special_position_is_snapped():
    # about 0.002 Å off the 2-fold axis (x, 0, 2/3)
    sites = [Site("Si", "Si", (0.4697, 0.0004, 2 / 3 - 0.0003), u_iso=0.01)]
    q = Crystal(QUARTZ_CELL, "P 32 2 1", sites)
    assert q.multiplicities == (3,)
    x = np.array(q.sites[0].frac)
    assert np.linalg.norm(q.real_basis() @ (x - sites[0].frac)) < 0.01
    # the snapped site is exactly on its axis: the identity and the 2-fold fix it
    fixed = [op for op in q.ops if same_point(np.array(op.apply_to_xyz(list(x))), x, q.real_basis(), 1e-12)]
    assert len(fixed) == 2


# --- moving the parameters --------------------------------------------------------------------------
def _randomise(params, seed, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        params.positions.add_(scale * (2 * torch.rand(params.positions.shape, generator=gen, dtype=params.positions.dtype) - 1))
        params.adp.mul_(1 + 0.5 * (2 * torch.rand(params.adp.shape, generator=gen, dtype=params.adp.dtype) - 1))
        params.adp.add_(0.02 * torch.rand(params.adp.shape, generator=gen, dtype=params.adp.dtype))


@pytest.mark.parametrize("make", SYNTHETIC, ids=lambda f: f.__name__)
def test_moved_images_stay_special_and_closed(make):
    crystal = make()
    params = crystal.parameters(anisotropic=True)
    _randomise(params, seed=3)
    atoms = crystal.expand(params)
    frac = atoms.frac.detach().numpy()
    u = atoms.u_cart.detach().numpy()
    orth = crystal.real_basis()
    frac_mat = np.linalg.inv(orth)
    for i in range(len(frac)):
        for op in crystal.ops:
            y = np.array(op.apply_to_xyz(list(frac[i])))
            rc = orth @ (np.array(op.rot, dtype=float) / gemmi.Op.DEN) @ frac_mat
            d = frac - y
            d -= np.round(d)
            close = np.linalg.norm(d @ orth.T, axis=1) < 1e-9
            matches = [j for j in np.flatnonzero(close) if atoms.site_index[j] == atoms.site_index[i]]
            assert len(matches) == 1, "the set of images is not closed under the group"
            np.testing.assert_allclose(rc @ u[i] @ rc.T, u[matches[0]], atol=1e-12)
    # each image keeps its Wyckoff multiplicity: the number of distinct images of the moved site
    # under gemmi's operations equals the stored multiplicity
    moved = crystal.with_parameters(params)
    for k, site in enumerate(moved.sites):
        pts = []
        for op in crystal.ops:
            y = np.array(op.apply_to_xyz(list(site.frac)))
            if not any(same_point(y, p, orth, 1e-6) for p in pts):
                pts.append(y)
        assert len(pts) == crystal.multiplicities[k]


@pytest.mark.parametrize("make", SYNTHETIC, ids=lambda f: f.__name__)
def test_special_site_u_is_invariant_and_positive(make):
    crystal = make()
    params = crystal.parameters(anisotropic=True)
    _randomise(params, seed=5)
    u_sites = params.site_u_cart().detach().numpy()
    site_frac = params.site_frac().detach().numpy()
    orth = crystal.real_basis()
    frac_mat = np.linalg.inv(orth)
    for k in range(len(u_sites)):
        assert np.linalg.eigvalsh(u_sites[k]).min() > 0
        for op in crystal.ops:  # stabiliser computed here from gemmi's ops
            if same_point(np.array(op.apply_to_xyz(list(site_frac[k]))), site_frac[k], orth, 1e-9):
                rc = orth @ (np.array(op.rot, dtype=float) / gemmi.Op.DEN) @ frac_mat
                np.testing.assert_allclose(rc @ u_sites[k] @ rc.T, u_sites[k], atol=1e-14)


def test_u_convention_matches_trueblood_beta():
    # exp(-2π² gᵀ U_cart g) must equal exp(-2π² Σ h_i h_j a*_i a*_j U_ij) (CIF U convention)
    crystal = c2c_with_axis()
    u_cif = np.array(crystal.sites[1].u_aniso)
    u11, u22, u33, u12, u13, u23 = u_cif
    umat = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
    rcell = crystal.gemmi_cell.reciprocal()
    astar = np.array([rcell.a, rcell.b, rcell.c])
    u_cart = crystal.site_u_cart()[1]
    for hkl in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 2, -3), (-2, 1, 4)]:
        h = np.array(hkl, dtype=float)
        g = crystal.reciprocal_basis() @ h
        expected = np.einsum("i,j,i,j,ij->", h, h, astar, astar, umat)
        assert g @ u_cart @ g == pytest.approx(expected, rel=1e-12)


def test_gradcheck_expand():
    crystal = c2c_with_axis()  # special + general site, centring, mixed isotropic/anisotropic
    params = crystal.parameters()
    _randomise(params, seed=1, scale=0.05)
    pos = params.positions.detach().clone().requires_grad_(True)
    adp = params.adp.detach().clone().requires_grad_(True)

    def func(pos, adp):
        p = crystal.parameters()
        del p.positions, p.adp  # swap the leaves for gradcheck's inputs
        p.positions, p.adp = pos, adp
        atoms = crystal.expand(p)
        return atoms.frac, atoms.u_cart

    assert torch.autograd.gradcheck(func, (pos, adp), eps=1e-6, atol=1e-8)
    frac, u = func(pos, adp)
    gen = torch.Generator().manual_seed(0)
    loss = (torch.rand(frac.shape, generator=gen, dtype=frac.dtype) * frac).sum() \
        + (torch.rand(u.shape, generator=gen, dtype=u.dtype) * u).sum()
    loss.backward()
    assert torch.isfinite(pos.grad).all() and (pos.grad != 0).all()
    assert torch.isfinite(adp.grad).all() and adp.grad.abs().sum() > 0


def test_parameter_sizes_and_modes():
    q = quartz()
    assert q.parameters().adp.numel() == 12 and q.parameters().anisotropic
    p_iso = q.parameters(anisotropic=False)
    assert p_iso.adp.numel() == 2 and not p_iso.anisotropic
    np.testing.assert_allclose(p_iso.site_u_iso().detach().numpy(), [s.u_iso for s in q.sites], rtol=1e-12)
    c = c2c_with_axis()
    assert c.parameters().site_anisotropic == (False, True)
    assert c.parameters().adp.numel() == 7
    assert c.parameters(anisotropic=True).adp.numel() == 12
    # float32 works too
    atoms = q.expand(q.parameters(dtype=torch.float32))
    assert atoms.frac.dtype == torch.float32


def test_with_parameters_round_trip():
    q = quartz()
    params = q.parameters()
    same = q.with_parameters(params)
    for a, b in zip(q.sites, same.sites):
        np.testing.assert_allclose(a.frac, b.frac, atol=1e-14)
        np.testing.assert_allclose(a.u_aniso, b.u_aniso, atol=1e-14)
    _randomise(params, seed=9, scale=0.1)
    moved = q.with_parameters(params)
    np.testing.assert_allclose(moved.expand().frac.numpy(), q.expand(params).frac.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(moved.expand().u_cart.numpy(), q.expand(params).u_cart.detach().numpy(), atol=1e-14)
