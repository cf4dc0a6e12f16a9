"""Crystal structures: CIF I/O, space-group symmetry and differentiable asymmetric-unit expansion.

Conventions: fractional coordinates, Cartesian Å with gemmi's orthogonalisation (``real_basis()``
columns a, b, c), reciprocal basis B = inv(A)ᵀ without 2π, U in Å² (CIF convention for ``Site.u_aniso``,
Cartesian in every tensor).
"""
from edwidgets.crystal.library import available_structures, load_structure, structure_path
from edwidgets.crystal.parameters import AsuParameters, CellAtoms
from edwidgets.crystal.structure import Crystal, Site, adp_frobenius, asu_rmsd, normalise_element
from edwidgets.crystal.symmetry import SPECIAL_POSITION_TOLERANCE, SiteSymmetry

__all__ = [
    "AsuParameters",
    "CellAtoms",
    "Crystal",
    "SPECIAL_POSITION_TOLERANCE",
    "Site",
    "SiteSymmetry",
    "adp_frobenius",
    "asu_rmsd",
    "available_structures",
    "load_structure",
    "normalise_element",
    "structure_path",
]
