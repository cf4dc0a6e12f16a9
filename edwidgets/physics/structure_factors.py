"""Electron structure factors F(hkl) = Σ_j occ_j f_e,j(s) T_j(g) exp(2πi h·x_j) (Å), crystallographic sign."""
from __future__ import annotations

import math

import torch

from .scattering import debye_waller, electron_form_factor


def structure_factors_from_atoms(
    hkl: torch.Tensor,
    frac: torch.Tensor,
    u_cart: torch.Tensor,
    occupancy: torch.Tensor,
    element_index: torch.Tensor,
    coef_a: torch.Tensor,
    coef_b: torch.Tensor,
    reciprocal_basis: torch.Tensor,
) -> torch.Tensor:
    """Complex electron structure factors for every row of ``hkl``.

    hkl [M, 3] (integer-valued, any real dtype), frac [n, 3], u_cart [n, 3, 3] (Å²), occupancy [n],
    element_index [n] (long, rows of coef_a / coef_b [n_el, 5]), reciprocal_basis [3, 3] with
    g_cart = B @ hkl (Å⁻¹). Every full-cell atom is listed once (no special-position double counting).
    """
    hkl = hkl.to(frac.dtype)
    g_cart = hkl @ reciprocal_basis.T
    f_el = electron_form_factor(coef_a, coef_b, (g_cart * g_cart).sum(-1))  # [M, n_el]
    f_atoms = f_el[:, element_index]  # [M, n]
    dw = debye_waller(g_cart, u_cart)  # [M, n]
    phase = 2.0 * math.pi * (hkl @ frac.T)  # [M, n]
    weight = occupancy[None, :] * f_atoms * dw
    return torch.complex(
        (weight * torch.cos(phase)).sum(-1),
        (weight * torch.sin(phase)).sum(-1),
    )
