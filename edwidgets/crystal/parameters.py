"""Free, unconstrained refinement parameters of an asymmetric unit (differentiable)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from edwidgets.crystal.symmetry import SiteSymmetry, lower_cholesky_psd

# Positions of the 6 entries of a lower-triangular 3x3 L in a flattened row-major 3x3 matrix:
# L00, L10, L11, L20, L21, L22.
_TRIL_FLAT = (0, 3, 4, 6, 7, 8)
_DIAG_FLAT = (0, 4, 8)


class AsuParameters(torch.nn.Module):
    """Refinable parameters of the asymmetric unit, free of constraints.

    * ``positions`` ([n_free]): for each site in turn, its displacement in Å along an orthonormal
      Cartesian basis of the directions its special position allows (k = 0..3 numbers per site; a
      general position has 3). Zero is the reference structure, so
      ``frac = x_ref + A⁻¹ Q p``; the site can never leave its Wyckoff position.
    * ``adp`` ([n_adp]): for each site in turn, either 6 entries of a lower-triangular Cartesian
      Cholesky factor L (L00, L10, L11, L20, L21, L22, Å) of an anisotropic site, with
      ``U = (1/|G|) Σ_{R∈G} Rc L Lᵀ Rcᵀ`` over the site-symmetry group G (positive semi-definite and
      exactly site-symmetric), or one value v of an isotropic site with ``U = v² I``.
      A U of exactly zero has zero gradient (v = 0, L = 0): start a refinement from U > 0.

    Occupancies are constant buffers (not refined).
    """

    def __init__(self, symmetries: Sequence[SiteSymmetry], u_cart: Sequence[np.ndarray],
                 site_anisotropic: Sequence[bool], occupancy: Sequence[float],
                 orth: np.ndarray, *, dtype: torch.dtype = torch.float64, device=None):
        super().__init__()
        n_sites = len(symmetries)
        self.site_anisotropic: tuple[bool, ...] = tuple(bool(a) for a in site_anisotropic)
        self.n_free_per_site: tuple[int, ...] = tuple(s.n_free for s in symmetries)
        n_free = sum(self.n_free_per_site)

        # positions: frac = ref + basis @ p, basis [3 n_sites, n_free]
        basis = np.zeros((3 * n_sites, n_free))
        col = 0
        for i, sym in enumerate(symmetries):
            basis[3 * i:3 * i + 3, col:col + sym.n_free] = sym.free_frac
            col += sym.n_free
        ref = np.stack([s.frac for s in symmetries]) if n_sites else np.zeros((0, 3))

        # ADPs: L_flat [9 n_sites] = mapping @ adp
        values: list[float] = []
        rows: list[int] = []
        cols: list[int] = []
        for i, (u, aniso) in enumerate(zip(u_cart, self.site_anisotropic)):
            if aniso:
                lower = lower_cholesky_psd(np.asarray(u, dtype=float))
                for flat in _TRIL_FLAT:
                    rows.append(9 * i + flat)
                    cols.append(len(values))
                    values.append(lower.flat[flat])
            else:
                u_iso = max(float(np.trace(u)) / 3.0, 0.0)
                for flat in _DIAG_FLAT:
                    rows.append(9 * i + flat)
                    cols.append(len(values))
                values.append(np.sqrt(u_iso))
        mapping = np.zeros((9 * n_sites, len(values)))
        mapping[rows, cols] = 1.0

        max_g = max((len(s.stabiliser_rc) for s in symmetries), default=1)
        stab = np.zeros((n_sites, max_g, 3, 3))
        weight = np.zeros((n_sites, max_g))
        for i, sym in enumerate(symmetries):
            g = len(sym.stabiliser_rc)
            stab[i, :g] = sym.stabiliser_rc
            weight[i, :g] = 1.0 / g

        kw = dict(dtype=dtype, device=device)
        self.positions = torch.nn.Parameter(torch.zeros(n_free, **kw))
        self.adp = torch.nn.Parameter(torch.tensor(values, **kw).reshape(-1))
        self.register_buffer("reference_frac", torch.tensor(ref, **kw).reshape(n_sites, 3))
        self.register_buffer("position_basis", torch.tensor(basis, **kw).reshape(3 * n_sites, n_free))
        self.register_buffer("adp_mapping", torch.tensor(mapping, **kw).reshape(9 * n_sites, len(values)))
        self.register_buffer("stabiliser_rc", torch.tensor(stab, **kw))
        self.register_buffer("stabiliser_weight", torch.tensor(weight, **kw))
        self.register_buffer("occupancy", torch.tensor(list(occupancy), **kw).reshape(n_sites))
        self.register_buffer("orth", torch.tensor(orth, **kw))

    @property
    def n_sites(self) -> int:
        return self.reference_frac.shape[0]

    @property
    def anisotropic(self) -> bool:
        """True if any site carries an anisotropic U (see ``site_anisotropic`` for each site)."""
        return any(self.site_anisotropic)

    def site_frac(self) -> torch.Tensor:
        """Fractional positions of the ASU sites, [n_sites, 3]."""
        shift = (self.position_basis @ self.positions).reshape(self.n_sites, 3)
        return self.reference_frac + shift

    def site_cart(self) -> torch.Tensor:
        """Cartesian positions (Å) of the ASU sites, [n_sites, 3]."""
        return self.site_frac() @ self.orth.T

    def site_u_cart(self) -> torch.Tensor:
        """Cartesian U (Å²) of the ASU sites, [n_sites, 3, 3]: symmetric, PSD and site-symmetric."""
        lower = (self.adp_mapping @ self.adp).reshape(self.n_sites, 3, 3)
        u = lower @ lower.transpose(-1, -2)
        rc = self.stabiliser_rc
        return torch.einsum("sg,sgij,sjk,sglk->sil", self.stabiliser_weight, rc, u, rc)

    def site_u_iso(self) -> torch.Tensor:
        """Equivalent isotropic U (trace / 3, Å²) of each ASU site, [n_sites]."""
        return torch.diagonal(self.site_u_cart(), dim1=-2, dim2=-1).sum(-1) / 3.0

    def extra_repr(self) -> str:
        return (f"n_sites={self.n_sites}, n_position_params={self.positions.numel()}, "
                f"n_adp_params={self.adp.numel()}, anisotropic_sites={sum(self.site_anisotropic)}")


@dataclass
class CellAtoms:
    """Every atom of the full unit cell, differentiable with respect to :class:`AsuParameters`.

    ``frac = R x_site + t + shift`` for each image (inside [0, 1) at the reference positions; refined
    positions may drift slightly outside, which changes nothing physical). ``u_cart`` is each image's
    Cartesian U, ``Rc U Rcᵀ`` with ``Rc = A R A⁻¹``.

    Only *distinct* images are listed (a site on a special position appears once per distinct
    position, not once per operation), so ``occupancy`` is the site's own occupancy, unscaled:
    sum over the atoms directly, without a multiplicity correction.
    """

    frac: torch.Tensor
    u_cart: torch.Tensor
    occupancy: torch.Tensor
    elements: tuple[str, ...]
    site_index: torch.Tensor
    op_index: torch.Tensor | None = None  # [n] long, which operation (in Crystal.symops order) made the image

    def __len__(self) -> int:
        return self.frac.shape[0]

    def cartesian(self, real_basis: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Cartesian positions (Å), given the 3x3 real basis (columns a, b, c) of the crystal."""
        basis = torch.as_tensor(real_basis, dtype=self.frac.dtype, device=self.frac.device)
        return self.frac @ basis.T
