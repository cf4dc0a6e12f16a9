"""One-call simulation API: a crystal in, a diffraction pattern (pandas DataFrame) out.

This is the thin layer joining the crystal model to the pure physics functions; the
experiment and refinement layers use :class:`ScatteringModel` directly.
"""
from __future__ import annotations

import math
from typing import Sequence

import gemmi
import numpy as np
import pandas as pd
import torch

from .physics.beams import (
    BeamSet,
    excitation_errors,
    orientation_from_zone_axis,
    reciprocal_points_within,
    select_beams,
)
from .physics.bloch import coupling_potentials, propagate, structure_matrix, thickness_to_tau
from .physics.constants import electron_wavelength, potential_prefactor, relativistic_gamma
from .physics.scattering import electron_factor_coefficients
from .physics.structure_factors import structure_factors_from_atoms

COMPLEX_OF = {torch.float64: torch.complex128, torch.float32: torch.complex64}


class ScatteringModel:
    """Constant tensors of a crystal for structure-factor evaluation (element tables, basis).

    Built once per crystal; :meth:`structure_factors` is differentiable in the atoms passed to it
    (a ``CellAtoms`` from ``crystal.expand(params)``).
    """

    def __init__(self, crystal, dtype: torch.dtype = torch.float64, device=None, *, cell=None):
        """``cell`` overrides the crystal's cell for geometry (a data file's cell is the authority)."""
        self.crystal = crystal
        self.dtype = dtype
        self.device = device
        atoms = crystal.expand()
        self.element_symbols = tuple(dict.fromkeys(atoms.elements))
        lookup = {e: i for i, e in enumerate(self.element_symbols)}
        self.element_index = torch.tensor([lookup[e] for e in atoms.elements], dtype=torch.long, device=device)
        coef_a, coef_b = electron_factor_coefficients(self.element_symbols)
        self.coef_a = torch.as_tensor(coef_a, dtype=dtype, device=device)
        self.coef_b = torch.as_tensor(coef_b, dtype=dtype, device=device)
        if cell is None:
            recip, volume = crystal.reciprocal_basis(), float(crystal.volume)
        else:
            real = np.array(gemmi.UnitCell(*cell).orth.mat.tolist())
            recip, volume = np.linalg.inv(real).T, float(abs(np.linalg.det(real)))
        self.reciprocal_basis = torch.as_tensor(recip, dtype=dtype, device=device)
        self.volume = volume
        self._default_atoms = atoms

    def structure_factors(self, hkl, atoms=None) -> torch.Tensor:
        """Complex F(hkl) (Å) for hkl [M, 3]; ``atoms`` defaults to the crystal's stored values."""
        atoms = self._default_atoms if atoms is None else atoms
        hkl_t = torch.as_tensor(np.array(hkl), device=self.device).to(self.dtype)
        if hkl_t.ndim != 2 or hkl_t.shape[-1] != 3:
            raise ValueError(f"hkl must be an [M, 3] array, got shape {tuple(hkl_t.shape)}")
        return structure_factors_from_atoms(
            hkl_t,
            atoms.frac.to(device=self.device, dtype=self.dtype),
            atoms.u_cart.to(device=self.device, dtype=self.dtype),
            atoms.occupancy.to(device=self.device, dtype=self.dtype),
            self.element_index,
            self.coef_a,
            self.coef_b,
            self.reciprocal_basis,
        )


def structure_factors(crystal, hkl, params=None, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Electron structure factors F(hkl) (Å, crystallographic sign exp(+2πi h·x)) of ``crystal``.

    ``params`` (from ``crystal.parameters()``) makes the result differentiable in them.
    """
    model = ScatteringModel(crystal, dtype=dtype)
    atoms = crystal.expand(params) if params is not None else None
    return model.structure_factors(hkl, atoms)


def _orientations(crystal, zone_axis, orientation) -> np.ndarray:
    if (zone_axis is None) == (orientation is None):
        raise ValueError("give exactly one of zone_axis=(u, v, w) or orientation=R (3x3 or [n, 3, 3])")
    if zone_axis is not None:
        return orientation_from_zone_axis(crystal.real_basis(), zone_axis)[None]
    rot = np.asarray(orientation, dtype=float)
    if rot.shape == (3, 3):
        rot = rot[None]
    if rot.ndim != 3 or rot.shape[1:] != (3, 3) or not np.all(np.isfinite(rot)):
        raise ValueError(f"orientation must be a finite 3x3 rotation or an [n, 3, 3] stack, got shape {rot.shape}")
    if not np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-6):
        raise ValueError("orientation matrices must be rotations (R Rᵀ = I)")
    return rot


def _thicknesses(thickness) -> np.ndarray:
    values = np.atleast_1d(np.asarray(thickness, dtype=float))
    if values.ndim != 1 or len(values) == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"thickness must be a non-negative number of Å or a 1-D array of them, got {thickness!r}")
    return values


def _pattern_geometry(crystal, zone_axis, orientation, voltage_kv, g_max, sg_max):
    rot = _orientations(crystal, zone_axis, orientation)
    wavelength = electron_wavelength(voltage_kv)
    k = 1.0 / wavelength
    recip = crystal.reciprocal_basis()
    hkl_all = reciprocal_points_within(recip, g_max)
    g_lab = np.einsum("bij,jk,mk->bmi", rot, recip, hkl_all)
    s_all = excitation_errors(torch.as_tensor(g_lab), k).numpy()
    mask = select_beams(hkl_all, s_all, sg_max)
    return rot, k, hkl_all[mask], g_lab[:, mask], s_all[:, mask]


def bloch_intensities(
    model: ScatteringModel,
    beams: BeamSet,
    orientation: torch.Tensor,
    thickness: torch.Tensor,
    *,
    voltage_kv: float = 200.0,
    atoms=None,
    absorption: float = 0.0,
    surface_normal=None,
    method: str = "eigen",
) -> torch.Tensor:
    """Differentiable Bloch-wave intensities I [B, T, N] for one beam set at B orientations.

    orientation [B, 3, 3] (crystal → lab), thickness [T] or [B, T] (Å along the surface normal),
    ``atoms`` a ``CellAtoms`` (differentiable positions/U) or None for the stored structure,
    ``surface_normal`` a crystal-frame Cartesian vector (None: along the beam). Gradients flow to
    atoms, thickness and orientation.
    """
    k = 1.0 / electron_wavelength(voltage_kv)
    dtype = model.dtype
    recip = model.reciprocal_basis
    hkl = torch.as_tensor(beams.hkl, dtype=dtype, device=recip.device)
    g_lab = torch.einsum("bij,jk,mk->bmi", orientation, recip, hkl)
    s = excitation_errors(g_lab, k)
    if surface_normal is None:
        normal_lab = torch.zeros_like(orientation[:, :, 0])
        normal_lab[:, 2] = 1.0
    else:
        n = torch.as_tensor(surface_normal, dtype=dtype, device=recip.device)
        normal_lab = orientation @ (n / torch.linalg.vector_norm(n))
    k_normal = k * normal_lab[:, 2]
    if torch.any(k_normal <= 0):
        raise ValueError("the surface normal must point into the crystal along the beam (K·n > 0)")
    g_normal = torch.einsum("bmi,bi->bm", g_lab, normal_lab)
    f_coupling = model.structure_factors(beams.coupling_hkl, atoms)
    u = coupling_potentials(f_coupling, potential_prefactor(voltage_kv, model.volume), beams.zero_coupling, absorption)
    a = structure_matrix(u, beams.coupling_index.to(recip.device), s, g_normal, k_normal, k)
    phi = propagate(a, thickness_to_tau(thickness, k_normal), method)
    return phi.real**2 + phi.imag**2


def simulate_pattern(
    crystal,
    zone_axis: Sequence[float] | None = None,
    *,
    orientation=None,
    thickness=500.0,
    voltage_kv: float = 200.0,
    g_max: float = 1.5,
    sg_max: float = 0.02,
    absorption: float = 0.0,
    surface_normal: Sequence[float] | None = None,
    method: str = "auto",
    dtype: torch.dtype = torch.float64,
    device=None,
) -> pd.DataFrame:
    """Dynamical (Bloch-wave) diffraction pattern of ``crystal``.

    Orientation: ``zone_axis=(u, v, w)`` (beam parallel to [uvw]) or ``orientation=R`` mapping
    crystal Cartesian axes to the lab (beam along +z); an [n, 3, 3] stack simulates n orientations
    in one batch with a shared beam set. ``thickness`` (Å, along the surface normal) may be an
    array: one decomposition serves every thickness. Beams: |g| ≤ g_max (Å⁻¹) and |s_g| ≤ sg_max.
    ``absorption`` is κ of the proportional model U' = κU. ``surface_normal`` is a crystal-frame
    Cartesian direction (default: along the beam). ``method``: "auto" (exact eigen path, or
    the general eigendecomposition "eig" with absorption), "eigen", "eig", "matrix_exp", "eigh_autograd". ``dtype`` float64 or
    float32 (complex64 propagation).

    Returns a DataFrame, one row per beam (and orientation and thickness): h, k, l, intensity,
    excitation_error (Å⁻¹), x, y (detector-plane coordinates, Å⁻¹), g (|g|, Å⁻¹), thickness,
    and orientation (index into the stack).
    """
    if dtype not in COMPLEX_OF:
        raise ValueError("dtype must be torch.float64 or torch.float32")
    if not (absorption >= 0 and math.isfinite(absorption)):
        raise ValueError(f"absorption must be a non-negative number, got {absorption!r}")
    if method == "auto":
        method = "eig" if absorption else "eigen"
    elif method not in ("eig", "matrix_exp") and absorption:
        raise ValueError(f"method {method!r} needs a Hermitian structure matrix; with absorption use 'eig', 'matrix_exp' or 'auto'")
    thicknesses = _thicknesses(thickness)
    rot, k, hkl, g_lab, s = _pattern_geometry(crystal, zone_axis, orientation, voltage_kv, g_max, sg_max)
    model = ScatteringModel(crystal, dtype=dtype, device=device)
    with torch.no_grad():
        intensity = bloch_intensities(
            model,
            BeamSet.from_hkl(hkl),
            torch.as_tensor(rot, dtype=dtype, device=device),
            torch.as_tensor(thicknesses, dtype=dtype, device=device),
            voltage_kv=voltage_kv,
            absorption=absorption,
            surface_normal=surface_normal,
            method=method,
        ).cpu().numpy()
    return _pattern_frame(hkl, g_lab, s, thicknesses, intensity)


def _pattern_frame(hkl, g_lab, s, thicknesses, intensity) -> pd.DataFrame:
    n_orient, n_thick, n_beams = intensity.shape
    idx_o, idx_t, idx_b = np.meshgrid(np.arange(n_orient), np.arange(n_thick), np.arange(n_beams), indexing="ij")
    idx_o, idx_t, idx_b = idx_o.ravel(), idx_t.ravel(), idx_b.ravel()
    return pd.DataFrame(
        {
            "h": hkl[idx_b, 0],
            "k": hkl[idx_b, 1],
            "l": hkl[idx_b, 2],
            "intensity": intensity.ravel(),
            "excitation_error": s[idx_o, idx_b],
            "x": g_lab[idx_o, idx_b, 0],
            "y": g_lab[idx_o, idx_b, 1],
            "g": np.linalg.norm(g_lab[idx_o, idx_b], axis=-1),
            "thickness": thicknesses[idx_t],
            "orientation": idx_o,
        }
    )


def kinematic_pattern(
    crystal,
    zone_axis: Sequence[float] | None = None,
    *,
    orientation=None,
    thickness=500.0,
    voltage_kv: float = 200.0,
    g_max: float = 1.5,
    sg_max: float = 0.02,
) -> pd.DataFrame:
    """Kinematical counterpart of :func:`simulate_pattern` (same beams and columns).

    I_g = (λγ|F_g| t / Ω)² sinc²(π t s_g): the thin-crystal limit of the Bloch-wave result
    (physics-notes §11.3); the 000 row carries 1 − Σ I_g, so the total is conserved while it is small.
    """
    thicknesses = _thicknesses(thickness)
    rot, k, hkl, g_lab, s = _pattern_geometry(crystal, zone_axis, orientation, voltage_kv, g_max, sg_max)
    model = ScatteringModel(crystal)
    with torch.no_grad():
        amplitude = model.structure_factors(hkl).abs().numpy()
    scale = electron_wavelength(voltage_kv) * relativistic_gamma(voltage_kv) / model.volume
    t = thicknesses[None, :, None]
    intensity = (scale * amplitude[None, None, :] * t) ** 2 * np.sinc(t * s[:, None, :]) ** 2  # np.sinc(x) = sin(πx)/(πx)
    direct = ~hkl.any(axis=1)
    intensity[..., direct] = 0.0
    intensity[..., direct] = 1.0 - intensity.sum(-1, keepdims=True)[..., 0:1]
    return _pattern_frame(hkl, g_lab, s, thicknesses, intensity)
