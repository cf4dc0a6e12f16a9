"""Space-group operations as arrays, site symmetry (stabilisers, orbits, free directions) and ADP conversions.

Everything here is plain numpy on the *reference* structure; the differentiable parts live in
:mod:`edwidgets.crystal.parameters` and only use the constant matrices computed here.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from edwidgets.errors import CrystalError

#: Two images of a site closer than this (Å) are the same atom, and a site closer than this to one
#: of its own images sits on a special position (it is then moved exactly onto it).
SPECIAL_POSITION_TOLERANCE = 0.01

SpaceGroupLike = "gemmi.SpaceGroup | gemmi.GroupOps"


def group_ops(space_group: gemmi.SpaceGroup | gemmi.GroupOps) -> gemmi.GroupOps:
    """The operations (including centring translations) of a tabulated group or of a GroupOps."""
    if isinstance(space_group, gemmi.SpaceGroup):
        return space_group.operations()
    return space_group


def op_arrays(ops: gemmi.GroupOps) -> tuple[np.ndarray, np.ndarray]:
    """All operations (symmetry x centring) as float arrays R [n,3,3] and t [n,3] (fractional)."""
    rot, tran = [], []
    for op in ops:
        rot.append(np.array(op.rot, dtype=float) / gemmi.Op.DEN)
        tran.append(np.array(op.tran, dtype=float) / gemmi.Op.DEN)
    return np.stack(rot), np.stack(tran)


def op_triplets(ops: gemmi.GroupOps) -> list[str]:
    """Every operation (symmetry x centring) as an xyz triplet, identity first."""
    return [op.triplet() for op in ops]


def check_group_closed(ops: gemmi.GroupOps, source: str = "") -> None:
    """Raise CrystalError unless the operations contain the identity and are closed under products."""
    den = gemmi.Op.DEN
    keys = set()
    mats = []
    for op in ops:
        rot = np.array(op.rot, dtype=np.int64)
        tran = np.mod(np.array(op.tran, dtype=np.int64), den)
        keys.add((tuple(rot.ravel()), tuple(tran)))
        mats.append((rot, tran))
    where = f"{source}: " if source else ""
    identity = (tuple(np.eye(3, dtype=np.int64).ravel() * den), (0, 0, 0))
    if identity not in keys:
        raise CrystalError(f"{where}the symmetry operations do not include the identity x,y,z")
    for r1, t1 in mats:
        for r2, t2 in mats:
            rot = r1 @ r2 // den
            tran = np.mod(r1 @ t2 // den + t1, den)
            if (tuple(rot.ravel()), tuple(tran)) not in keys:
                raise CrystalError(f"{where}the symmetry operations are not closed under composition "
                                   "(a list of operations must be a whole group)")


def tabulated_or_ops(ops: gemmi.GroupOps) -> gemmi.SpaceGroup | gemmi.GroupOps:
    """gemmi's tabulated space group with exactly these operations (same setting), else the ops themselves."""
    sg = gemmi.find_spacegroup_by_ops(ops)
    return sg if sg is not None else ops


def space_group_name(space_group: gemmi.SpaceGroup | gemmi.GroupOps) -> str:
    if isinstance(space_group, gemmi.SpaceGroup):
        return space_group.xhm()
    return "(non-tabulated setting: " + "; ".join(op_triplets(space_group)) + ")"


def u_cif_to_cart(u6: tuple[float, ...] | np.ndarray, orth: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """CIF U11 U22 U33 U12 U13 U23 (Å²) to the Cartesian U matrix: U_cart = A N U N Aᵀ, N = diag(a*, b*, c*)."""
    u11, u22, u33, u12, u13, u23 = (float(v) for v in u6)
    u = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
    n = np.diag(np.linalg.norm(frac, axis=1))  # rows of A⁻¹ are the reciprocal vectors a*, b*, c*
    return orth @ n @ u @ n @ orth.T


def u_cart_to_cif(u_cart: np.ndarray, orth: np.ndarray, frac: np.ndarray) -> tuple[float, ...]:
    """Inverse of :func:`u_cif_to_cart`, returned in CIF order U11 U22 U33 U12 U13 U23."""
    n_inv = np.diag(1.0 / np.linalg.norm(frac, axis=1))
    u = n_inv @ frac @ u_cart @ frac.T @ n_inv
    return (u[0, 0], u[1, 1], u[2, 2], u[0, 1], u[0, 2], u[1, 2])


def lower_cholesky_psd(u: np.ndarray) -> np.ndarray:
    """A lower-triangular L with L Lᵀ = u for a symmetric positive *semi*-definite u (zero allowed)."""
    u = 0.5 * (u + u.T)
    w, v = np.linalg.eigh(u)
    m = np.diag(np.sqrt(np.clip(w, 0.0, None))) @ v.T  # mᵀ m = u
    _, r = np.linalg.qr(m)  # m = q r, so rᵀ r = mᵀ m = u
    lower = r.T
    signs = np.sign(np.diag(lower))
    signs[signs == 0] = 1.0
    return lower * signs[None, :]


@dataclass(frozen=True)
class SiteSymmetry:
    """Site symmetry of one ASU site, computed on its reference position.

    ``frac`` is the reference position moved exactly onto its special position; ``free_cart`` is an
    orthonormal Cartesian basis (3 x k) of the directions the site may move in; ``free_frac`` the same
    directions in fractional units per Å (A⁻¹ free_cart). ``stabiliser_rc`` are the Cartesian rotations
    of the site-symmetry group (identity included). ``orbit_ops``/``orbit_shifts`` pick, for each distinct
    image in the cell, the operation index and the integer lattice shift with
    ``image = R x + t + shift`` lying in [0, 1) at the reference position.
    """

    frac: np.ndarray
    free_cart: np.ndarray
    free_frac: np.ndarray
    stabiliser_rc: np.ndarray
    orbit_ops: np.ndarray
    orbit_shifts: np.ndarray

    @property
    def n_free(self) -> int:
        return self.free_cart.shape[1]

    @property
    def multiplicity(self) -> int:
        return len(self.orbit_ops)

    def symmetrise_u(self, u_cart: np.ndarray) -> np.ndarray:
        """Average of Rc U Rcᵀ over the stabiliser: the nearest site-symmetric U (exact for a symmetric one)."""
        rc = self.stabiliser_rc
        return np.einsum("gij,jk,glk->il", rc, u_cart, rc) / len(rc)


def _wrap(delta: np.ndarray) -> np.ndarray:
    return delta - np.round(delta)


def analyse_site(x0: np.ndarray, rot: np.ndarray, tran: np.ndarray, orth: np.ndarray,
                 tol: float = SPECIAL_POSITION_TOLERANCE, label: str = "") -> SiteSymmetry:
    """Stabiliser, exact special position, free directions and distinct images of a site."""
    frac_mat = np.linalg.inv(orth)
    x = np.asarray(x0, dtype=float)
    rc_all = orth @ rot @ frac_mat  # Cartesian rotations A R A⁻¹
    for _ in range(3):  # snapping once is exact; repeat in case the tolerance picked up a new op
        images = np.einsum("nij,j->ni", rot, x) + tran
        delta = images - x
        near = np.linalg.norm(_wrap(delta) @ orth.T, axis=1) < tol
        stab = np.flatnonzero(near)
        shifts = -np.round(delta[stab])
        snapped = (images[stab] + shifts).mean(axis=0)
        if np.allclose(snapped, x, atol=1e-15, rtol=0):
            break
        x = snapped
    rc_stab = rc_all[stab]
    # free directions: common null space of (Rc - I) over the stabiliser
    stacked = (rc_stab - np.eye(3)[None]).reshape(-1, 3)
    _, sv, vt = np.linalg.svd(stacked)
    rank = int(np.sum(sv > 1e-8))
    free_cart = vt[rank:].T.copy()
    # Make the basis deterministic (positive largest component) so perturbations are reproducible.
    for k in range(free_cart.shape[1]):
        col = free_cart[:, k]
        if col[np.argmax(np.abs(col))] < 0:
            free_cart[:, k] = -col
    free_frac = frac_mat @ free_cart

    images = np.einsum("nij,j->ni", rot, x) + tran
    kept: list[int] = []
    kept_pos: list[np.ndarray] = []
    kept_shift: list[np.ndarray] = []
    for j, img in enumerate(images):
        shift = -np.floor(img + 1e-9)
        pos = img + shift
        if any(np.linalg.norm(_wrap(pos - p) @ orth.T) < tol for p in kept_pos):
            continue
        kept.append(j)
        kept_pos.append(pos)
        kept_shift.append(shift)
    n_ops = len(rot)
    if len(kept) * len(stab) != n_ops:
        raise CrystalError(
            f"site {label or x0}: {len(kept)} distinct images and a site group of order {len(stab)} do not "
            f"multiply to the {n_ops} operations; the site is within the tolerance ({tol} Å) of an image "
            "without being on a special position")
    return SiteSymmetry(frac=x, free_cart=free_cart, free_frac=free_frac, stabiliser_rc=rc_stab,
                        orbit_ops=np.array(kept, dtype=np.int64), orbit_shifts=np.stack(kept_shift))


def inverted_setting(space_group: gemmi.SpaceGroup | gemmi.GroupOps) -> tuple[np.ndarray, gemmi.GroupOps]:
    """Change-of-hand x' = -x + c and the conjugated operations (R, c - R c - t).

    For a tabulated group, c is gemmi's change_of_hand_op (so a non-enantiomorphic group stays in its
    own setting and P3₂21 becomes P3₁21); for a bare GroupOps, c = 0.
    """
    den = gemmi.Op.DEN
    if isinstance(space_group, gemmi.SpaceGroup):
        hand = space_group.change_of_hand_op()
        c = np.array(hand.tran, dtype=np.int64)
    else:
        c = np.zeros(3, dtype=np.int64)
    new_ops = []
    for op in group_ops(space_group):
        rot = np.array(op.rot, dtype=np.int64)
        tran = np.array(op.tran, dtype=np.int64)
        new_t = np.mod(c - rot @ c // den - tran, den)
        new_ops.append(gemmi.Op(_triplet_from(rot, new_t)))
    return c.astype(float) / den, gemmi.GroupOps(new_ops)


def _triplet_from(rot: np.ndarray, tran: np.ndarray) -> str:
    op = gemmi.Op("x,y,z")
    op.rot = [[int(v) for v in row] for row in rot]
    op.tran = [int(v) for v in tran]
    return op.triplet()
