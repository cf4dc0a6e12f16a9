"""Electron scattering factors (Peng et al. 1996 five-Gaussian fits, from gemmi's tables) and
Debye–Waller factors. Pure tensor functions; the element tables are read once per element."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import gemmi
import numpy as np
import torch

from ..errors import CrystalError


@lru_cache(maxsize=None)
def _c4322(symbol: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    element = gemmi.Element(symbol)
    if element.atomic_number == 0 or element.name.lower() != symbol.strip().lower():
        raise CrystalError(f"unknown element {symbol!r}: no electron scattering factor for it")
    coef = element.c4322
    return tuple(coef.a), tuple(coef.b)


def electron_factor_coefficients(elements: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) arrays of shape [len(elements), 5] with f_e(s) = Σ a_i exp(−b_i s²), s = |g|/2 (Å⁻¹)."""
    pairs = [_c4322(e) for e in elements]
    return np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float)


def electron_form_factor(coef_a: torch.Tensor, coef_b: torch.Tensor, g_squared: torch.Tensor) -> torch.Tensor:
    """f_e (Å) for every (g, element): coef [n_el, 5], g_squared [M] (Å⁻²) → [M, n_el]."""
    s2 = (g_squared / 4.0)[:, None, None]
    return (coef_a[None] * torch.exp(-coef_b[None] * s2)).sum(-1)


def debye_waller(g_cart: torch.Tensor, u_cart: torch.Tensor) -> torch.Tensor:
    """Anisotropic Debye–Waller factor T = exp(−2π² gᵀ U g): g_cart [M, 3] (Å⁻¹), u_cart [n, 3, 3] → [M, n].

    Isotropic atoms simply have U = U_iso·I, for which this reduces to exp(−2π² U_iso |g|²).
    """
    quad = torch.einsum("mi,nij,mj->mn", g_cart, u_cart, g_cart)
    return torch.exp(-2.0 * math.pi**2 * quad)
