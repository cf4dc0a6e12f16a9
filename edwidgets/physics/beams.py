"""Reciprocal-lattice enumeration, orientations, excitation errors and beam selection.

Lab frame convention used everywhere in edwidgets: the incident electron wave vector is
K = K·ẑ (the beam travels along +z), K = 1/λ (no 2π). A crystal orientation is a rotation R
taking crystal Cartesian coordinates to the lab: g_lab = R @ B @ hkl, with B the reciprocal
basis (g_cart = B @ hkl, Å⁻¹). The excitation error is s_g = (K² − |K + g|²) / (2K), positive
when the reciprocal-lattice point lies inside the Ewald sphere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def reciprocal_points_within(reciprocal_basis: np.ndarray, g_max: float) -> np.ndarray:
    """All integer hkl with |B hkl| ≤ g_max as an int array [M, 3], 000 first, then by |g|."""
    if not (g_max > 0 and math.isfinite(g_max)):
        raise ValueError(f"g_max must be a positive number of Å⁻¹, got {g_max!r}")
    reciprocal_basis = np.asarray(reciprocal_basis, dtype=float)
    real_basis = np.linalg.inv(reciprocal_basis).T  # columns a, b, c
    limits = np.floor(g_max * np.linalg.norm(real_basis, axis=0) + 1e-9).astype(int)  # |h| ≤ |a||g|
    axes = [np.arange(-n, n + 1) for n in limits]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    g = np.linalg.norm(hkl @ reciprocal_basis.T, axis=1)
    keep = g <= g_max * (1 + 1e-12)
    hkl, g = hkl[keep], g[keep]
    order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0], np.round(g, 10)))
    return hkl[order].astype(np.int64)


def rotation_matrix(axis, angle_rad: float) -> np.ndarray:
    """Right-handed rotation by ``angle_rad`` about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return c * np.eye(3) + s * cross + (1 - c) * np.outer(axis, axis)


def orientation_from_zone_axis(real_basis: np.ndarray, uvw, x_direction_hkl=None) -> np.ndarray:
    """Rotation R putting the real-space direction [uvw] along the beam (+z).

    The electron wave vector is parallel to [uvw]. The in-plane rotation is fixed by sending the
    reciprocal vector ``x_direction_hkl`` (default: the shortest zero-order-Laue-zone vector) to +x,
    so patterns are reproducible.
    """
    real_basis = np.asarray(real_basis, dtype=float)
    uvw = np.asarray(uvw, dtype=float)
    if uvw.shape != (3,) or not np.any(uvw):
        raise ValueError(f"zone axis must be three numbers, not all zero; got {uvw!r}")
    beam = real_basis @ uvw
    z = beam / np.linalg.norm(beam)
    reciprocal_basis = np.linalg.inv(real_basis).T
    if x_direction_hkl is None:
        # shortest reciprocal vector perpendicular to the zone axis (h·uvw = 0)
        candidates = reciprocal_points_within(reciprocal_basis, 3.0 / np.min(np.linalg.norm(real_basis, axis=0)) + 1.0)
        zolz = candidates[1:][(candidates[1:] @ uvw) == 0]
        x_direction_hkl = zolz[0]
    x = reciprocal_basis @ np.asarray(x_direction_hkl, dtype=float)
    x = x - z * (x @ z)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError(f"x_direction_hkl {x_direction_hkl} is parallel to the zone axis {uvw}")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])  # rows: crystal-frame images of lab x, y, z → R maps crystal → lab


def excitation_errors(g_lab: torch.Tensor, k: float) -> torch.Tensor:
    """s_g = (K² − |K ẑ + g|²)/(2K) = −g_z − |g|²/(2K) for g_lab [..., 3] (Å⁻¹)."""
    return -g_lab[..., 2] - (g_lab * g_lab).sum(-1) / (2.0 * k)


@dataclass(frozen=True)
class BeamSet:
    """A fixed set of beams (row 0 is 000) with the cached gather of couplings U_{g_i − g_j}.

    ``coupling_hkl`` lists the distinct differences; ``coupling_index[i, j]`` points into it and
    ``zero_coupling`` is the position of 000 among them (the diagonal).
    """

    hkl: np.ndarray
    coupling_hkl: np.ndarray
    coupling_index: torch.Tensor
    zero_coupling: int

    @classmethod
    def from_hkl(cls, hkl) -> "BeamSet":
        hkl = np.asarray(hkl, dtype=np.int64)
        if hkl.ndim != 2 or hkl.shape[1] != 3 or len(hkl) == 0:
            raise ValueError("beam list must be an [N, 3] integer array")
        if np.any(hkl[0] != 0):
            raise ValueError("the first beam must be 000 (the transmitted beam)")
        diff = (hkl[:, None, :] - hkl[None, :, :]).reshape(-1, 3)
        unique, inverse = np.unique(diff, axis=0, return_inverse=True)
        zero = int(np.flatnonzero(~unique.any(axis=1))[0])
        index = torch.as_tensor(inverse.reshape(len(hkl), len(hkl)), dtype=torch.long)
        return cls(hkl=hkl, coupling_hkl=unique, coupling_index=index, zero_coupling=zero)

    @property
    def n_beams(self) -> int:
        return len(self.hkl)


def select_beams(hkl: np.ndarray, excitation_error: np.ndarray, sg_max: float) -> np.ndarray:
    """Boolean mask of beams with |s_g| ≤ sg_max in any of the given orientations; 000 always kept.

    ``excitation_error`` is [M] or [n_orientations, M]: taking the union over a frame's
    orientation samples gives one beam set per frame (physics-notes §5).
    """
    s = np.abs(np.atleast_2d(np.asarray(excitation_error)))
    mask = (s <= sg_max).any(axis=0)
    mask |= ~np.asarray(hkl).any(axis=1)
    return mask
