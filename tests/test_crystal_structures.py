"""The structures shipped in edwidgets/data/structures: they load, cite a source, have the right
composition and symmetry (checked with gemmi), and the two quartz files are enantiomorphs."""
from __future__ import annotations

from collections import Counter

import gemmi
import numpy as np
import pytest

from edwidgets.crystal import asu_rmsd, available_structures, load_structure, structure_path
from edwidgets.errors import CrystalError

EXPECTED = {
    # name: (space group, formula per cell, multiplicities)
    "quartz_P3221": ("P 32 2 1", {"Si": 3, "O": 6}, (3, 6)),
    "quartz_P3121": ("P 31 2 1", {"Si": 3, "O": 6}, (3, 6)),
    "cspbbr3": ("P b n m", {"Cs": 4, "Pb": 4, "Br": 12}, (4, 4, 8, 4)),
    "paracetamol": ("P b c a", {"C": 64, "H": 72, "N": 8, "O": 16}, (8,) * 20),
}


def test_available():
    assert set(EXPECTED) <= set(available_structures())
    with pytest.raises(CrystalError, match="available"):
        load_structure("unobtainium")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_structure(name):
    sg, formula, mult = EXPECTED[name]
    crystal = load_structure(name)
    assert crystal.space_group.xhm() == sg
    assert crystal.multiplicities == mult
    assert Counter(crystal.expand().elements) == Counter(formula)
    # the file cites its source
    block = gemmi.cif.read(str(structure_path(name))).sole_block()
    assert len(gemmi.cif.as_string(block.find_value("_publ_section_references")).strip()) > 20
    # gemmi's own expansion of the file agrees
    small = gemmi.make_small_structure_from_block(block)
    theirs = Counter((s.element.name, tuple(np.round(np.mod(s.fract.tolist(), 1.0), 4) % 1.0))
                     for s in small.get_all_unit_cell_sites())
    ours = Counter((el, tuple(np.round(np.mod(x, 1.0), 4) % 1.0))
                   for el, x in zip(crystal.expand().elements, crystal.expand().frac.numpy()))
    assert ours == theirs


def test_quartz_files_are_enantiomorphs():
    right, left = load_structure("quartz_P3221"), load_structure("quartz_P3121")
    assert asu_rmsd(right.inverted(), left) < 1e-6
    assert right.inverted().space_group.xhm() == left.space_group.xhm()
    # Si-O bonds about 1.61 Å in both
    for crystal in (right, left):
        atoms = crystal.expand()
        cart = atoms.cartesian(crystal.real_basis()).numpy()
        si = cart[[i for i, e in enumerate(atoms.elements) if e == "Si"]]
        o = cart[[i for i, e in enumerate(atoms.elements) if e == "O"]]
        shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ crystal.real_basis().T
        d = np.linalg.norm(si[:, None, None, :] - (o[None, :, None, :] + shifts[None, None]), axis=-1)
        bonds = np.sort(d.reshape(len(si), -1), axis=1)[:, :4]
        assert np.all(np.abs(bonds - 1.61) < 0.02)


def test_cspbbr3_octahedra():
    crystal = load_structure("cspbbr3")
    atoms = crystal.expand()
    assert all(s.u_aniso is not None for s in crystal.sites)
    cart = atoms.cartesian(crystal.real_basis()).numpy()
    pb = cart[[i for i, e in enumerate(atoms.elements) if e == "Pb"]][0]
    br = cart[[i for i, e in enumerate(atoms.elements) if e == "Br"]]
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ crystal.real_basis().T
    d = np.sort(np.linalg.norm(br[:, None, :] + shifts[None] - pb, axis=-1).ravel())
    assert np.all((d[:6] > 2.8) & (d[:6] < 3.1)) and d[6] > 4.0  # PbBr6 octahedron, Pb-Br about 2.95 Å
