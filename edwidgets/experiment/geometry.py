"""Frame geometry of PETS2 data in the simulator's lab frame (pure numpy / torch, no I/O).

Simulator convention (``edwidgets.physics.beams``): lab frame with the incident wave vector
K = K·ẑ (beam along +z), K = 1/λ; a reflection's lab vector is ``g_lab = R @ B_cart @ hkl`` with
``B_cart = inv(A).T`` and A the real-space basis (columns a, b, c) in gemmi's orthogonalisation;
``s_g = (K² − |K+g|²)/(2K) = −g_z − |g|²/(2K)``.

PETS2 convention (found from the data, see tests/test_pets_geometry.py):

* PETS's UB maps integer hkl to Cartesian reciprocal vectors (Å⁻¹, no 2π) of a PETS frame in
  which the goniometer axis is x. Frame i has ``g_pets = R_z(ω_i) R_x(α_i) R_y(β_i) UB hkl``
  (active rotations, degrees in the file). ω_i ≈ "rotation axis position" (the azimuth of the
  axis on the detector); R_z(ω) only turns the picture about the beam, so ω does not change any
  excitation error, while a wrong *place* of ω in the product (rotating about detector x while
  the crystal is set by R_z(ω) UB) does, by a lot for glycine (ω = 230.4°).
* In that frame the electrons travel along **−z**: the listed reflections satisfy
  ``g_z ≈ +|g|²/(2K)`` (mean signed s_g ≈ 0 in every |g| shell only with this sign; with +z it
  is ≈ −|g|²/K, −0.05 Å⁻¹ at |g| = 1.5). PETS's zone axis ``u v w`` per frame is
  ``(R_z R_x R_y UB)ᵀ ẑ``, i.e. it points against the beam (towards the gun).
* So ``g_lab = T g_pets`` with ``T = diag(1, −1, −1)`` (a proper 180° rotation about x that
  sends −z to +z). Hence, with ``U = UB · B_cart⁻¹ = UB · Aᵀ`` (not re-orthonormalised: it carries
  PETS's ~1 % measured-vs-nominal cell difference, so R is only nearly orthogonal),

      R_i = T · R_z(ω_i) R_x(α_i) R_y(β_i) · UB · Aᵀ,       R_i B_cart hkl = T g_pets.

  The excitation errors cannot tell T from a mirror (diag(−1,−1,−1) etc.); the proper T keeps
  det R > 0, i.e. it assumes PETS's frame is right-handed (absolute structure depends on it).
* Increasing α is a right-handed rotation about ``rotation_axis(data) = T R_z(ω̄) x̂``
  (ω̄ the mean frame ω): ``R(α+δ) = rot(axis, δ) @ R(α)`` up to the small spread of ω_i.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gemmi
import numpy as np

if TYPE_CHECKING:
    from edwidgets.experiment.pets import PetsData

__all__ = [
    "PETS_TO_LAB",
    "beam_zone_axes",
    "cell_basis_from_parameters",
    "excitation_error_rates",
    "excitation_errors",
    "frame_angles",
    "frame_orientations",
    "goniometer_rotations",
    "reflection_excitation_errors",
    "rotation_axis",
]

#: Proper rotation taking PETS's Cartesian frame (beam along −z) to the lab frame (beam along +z).
PETS_TO_LAB = np.diag([1.0, -1.0, -1.0])


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def goniometer_rotations(alpha_deg: Any, beta_deg: Any, omega_deg: Any) -> np.ndarray:
    """PETS goniometer rotations ``R_z(ω) R_x(α) R_y(β)`` (active, in PETS's frame), shape [..., 3, 3]."""
    alpha, beta, omega = np.broadcast_arrays(*(np.radians(np.asarray(x, dtype=np.float64)) for x in (alpha_deg, beta_deg, omega_deg)))
    return _rot_z(omega) @ _rot_x(alpha) @ _rot_y(beta)


def cell_basis_from_parameters(cell: Any) -> np.ndarray:
    """Real-space basis A (columns a, b, c in Å) of a cell (a, b, c, α, β, γ) in gemmi's orthogonalisation."""
    return np.array(gemmi.UnitCell(*[float(x) for x in cell]).orth.mat.tolist(), dtype=np.float64)


def frame_orientations(data: PetsData, cell_basis: np.ndarray | None = None) -> np.ndarray:
    """[n_frames, 3, 3] orientation R of every frame (file order) in the simulator's convention.

    ``R_i = PETS_TO_LAB · R_z(ω_i) R_x(α_i) R_y(β_i) · UB · Aᵀ`` with A = ``cell_basis`` (columns
    a, b, c, Cartesian Å; default: the .cif_pets cell in gemmi's orthogonalisation), so that
    ``R_i @ inv(A).T @ hkl`` is PETS's reciprocal vector turned into the lab frame. R is not
    re-orthonormalised (it keeps the UB metric); use ``cell_basis`` of the structure you simulate
    so that B_cart and R are consistent.
    """
    basis = cell_basis_from_parameters(data.cell) if cell_basis is None else np.asarray(cell_basis, dtype=np.float64)
    if basis.shape != (3, 3) or not np.all(np.isfinite(basis)) or abs(np.linalg.det(basis)) < 1e-9:
        raise ValueError(f"cell_basis must be a finite non-singular 3x3 matrix (columns a, b, c), got shape {basis.shape}")
    frames = data.frames
    gonio = goniometer_rotations(frames["alpha"].to_numpy(), frames["beta"].to_numpy(), frames["omega"].to_numpy())
    return PETS_TO_LAB @ gonio @ (np.asarray(data.ub, dtype=np.float64) @ basis.T)


def excitation_errors(R: Any, B_cart: Any, hkl: Any, wavelength: float) -> Any:
    """s_g = (K² − |K ẑ + g|²)/(2K) for ``g = R @ B_cart @ hkl`` (Å⁻¹), K = 1/λ.

    ``R`` [..., 3, 3], ``B_cart`` [3, 3] (or broadcastable), ``hkl`` [N, 3] or [..., N, 3];
    returns [..., N]. Works on numpy arrays, or on torch tensors (differentiable) when any
    argument is a tensor.
    """
    k = 1.0 / float(wavelength)
    if any(type(x).__module__.startswith("torch") for x in (R, B_cart, hkl)):
        import torch

        R = torch.as_tensor(R)
        dtype = R.dtype if R.is_floating_point() else torch.float64
        R = R.to(dtype)
        B = torch.as_tensor(B_cart, device=R.device).to(dtype)
        h = torch.as_tensor(hkl, device=R.device).to(dtype)
        g = torch.einsum("...ij,...nj->...ni", R @ B, h)
    else:
        g = np.einsum("...ij,...nj->...ni", np.asarray(R, np.float64) @ np.asarray(B_cart, np.float64), np.asarray(hkl, np.float64))
    return -g[..., 2] - (g * g).sum(-1) / (2.0 * k)


def _reflection_g_lab(data: PetsData, cell_basis: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    basis = cell_basis_from_parameters(data.cell) if cell_basis is None else np.asarray(cell_basis, dtype=np.float64)
    orientations = frame_orientations(data, basis)
    row_of_frame = {int(f): i for i, f in enumerate(data.frames["frame"].to_numpy())}
    rows = np.array([row_of_frame[int(f)] for f in data.reflections["frame"].to_numpy()], dtype=np.int64)
    b_cart = np.linalg.inv(basis).T
    g = np.einsum("nij,nj->ni", orientations[rows] @ b_cart, data.hkl.astype(np.float64))
    return g, rows


def reflection_excitation_errors(data: PetsData, cell_basis: np.ndarray | None = None) -> np.ndarray:
    """s_g (Å⁻¹) of every row of ``data.reflections`` at the centre orientation of its own frame."""
    g, _ = _reflection_g_lab(data, cell_basis)
    return -g[:, 2] - (g * g).sum(-1) * (data.wavelength / 2.0)


def excitation_error_rates(data: PetsData, cell_basis: np.ndarray | None = None) -> np.ndarray:
    """ds_g/dα (Å⁻¹ per radian) of every reflection row at its frame centre.

    For a rotation δ about the unit axis n, g → g + δ n × g, so ds/dα = −(n × g)_z; its magnitude
    is at most the lever arm |n × g|. ``|s_g| / (|ds/dα| · half_width)`` is the R_Sg of
    physics-notes §7 in its first-order form.
    """
    g, _ = _reflection_g_lab(data, cell_basis)
    axis = rotation_axis(data)
    return -np.cross(axis, g)[:, 2]


def rotation_axis(data: PetsData) -> np.ndarray:
    """Unit goniometer axis in the lab frame, ``PETS_TO_LAB · R_z(ω̄) x̂`` (ω̄: circular mean of frame ω).

    Increasing α turns the crystal right-handedly about this axis. Falls back to the details'
    "rotation axis position" when the frame loop has no ω.
    """
    if "omega" in data.frames and len(data.frames):
        omega = np.radians(data.frames["omega"].to_numpy(dtype=np.float64))
        azimuth = float(np.arctan2(np.sin(omega).mean(), np.cos(omega).mean()))
    elif data.rotation_axis_deg is not None:
        azimuth = float(np.radians(data.rotation_axis_deg))
    else:
        azimuth = 0.0
    axis = PETS_TO_LAB @ np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
    return axis / np.linalg.norm(axis)


def frame_angles(data: PetsData) -> np.ndarray:
    """Goniometer tilt α (deg) of each frame, file order: the abscissa of thickness-vs-tilt plots."""
    return data.frames["alpha"].to_numpy(dtype=np.float64).copy()


def beam_zone_axes(data: PetsData, cell_basis: np.ndarray | None = None) -> np.ndarray:
    """[n_frames, 3] direction of electron travel (+z lab) in direct-lattice coordinates [uvw].

    Normalised to a largest component of magnitude 1, like PETS's u v w, which are the *opposite*
    vector (PETS lists the zone axis pointing back towards the gun): ``beam_zone_axes == −uvw``.
    """
    basis = cell_basis_from_parameters(data.cell) if cell_basis is None else np.asarray(cell_basis, dtype=np.float64)
    m = frame_orientations(data, basis) @ np.linalg.inv(basis).T  # g_lab = m @ hkl
    uvw = np.swapaxes(m, -1, -2) @ np.array([0.0, 0.0, 1.0])  # z·g_lab = uvw·hkl
    return uvw / np.abs(uvw).max(axis=-1, keepdims=True)
