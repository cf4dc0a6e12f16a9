"""Crystal structures: cell, space group and asymmetric unit, with differentiable full-cell expansion."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import gemmi
import numpy as np
import torch

from edwidgets.crystal.parameters import AsuParameters, CellAtoms
from edwidgets.crystal.symmetry import (
    SPECIAL_POSITION_TOLERANCE,
    SiteSymmetry,
    analyse_site,
    check_group_closed,
    group_ops,
    inverted_setting,
    op_arrays,
    op_triplets,
    space_group_name,
    tabulated_or_ops,
    u_cart_to_cif,
    u_cif_to_cart,
)
from edwidgets.errors import CrystalError
from edwidgets.io_utils import atomic_write_text


@dataclass(frozen=True)
class Site:
    """One site of the asymmetric unit.

    ``u_aniso`` holds U11 U22 U33 U12 U13 U23 in the CIF convention (Å², on the axes of the
    reciprocal-length-normalised cell), or None for an isotropic site; ``u_iso`` is then U_iso, and for
    an anisotropic site the equivalent U_eq = trace(U_cart) / 3 (recomputed by :class:`Crystal`).
    """

    label: str
    element: str
    frac: tuple[float, float, float]
    occupancy: float = 1.0
    u_iso: float = 0.0
    u_aniso: tuple[float, ...] | None = None


def normalise_element(symbol: str) -> str:
    """'O2-' -> 'O', 'SI' -> 'Si', 'Pb2+' -> 'Pb'; raises CrystalError for an unknown element."""
    el = gemmi.Element(str(symbol).strip())
    if el.atomic_number == 0:
        raise CrystalError(f"unknown element {symbol!r}")
    return el.name


def _resolve_space_group(space_group) -> gemmi.SpaceGroup | gemmi.GroupOps:
    if isinstance(space_group, (gemmi.SpaceGroup, gemmi.GroupOps)):
        ops = group_ops(space_group)
        check_group_closed(ops)
        return space_group
    if not isinstance(space_group, str) or not space_group.strip():
        raise CrystalError(f"space group must be a name, a Hall symbol, ';'-separated xyz operations, "
                           f"a gemmi.SpaceGroup or a gemmi.GroupOps, not {space_group!r}")
    text = space_group.strip()
    if "," in text:  # explicit operations: 'x,y,z; -x,-y,-z'
        try:
            ops = gemmi.GroupOps([gemmi.Op(t.strip()) for t in text.split(";") if t.strip()])
        except Exception as exc:
            raise CrystalError(f"cannot parse symmetry operations {text!r} ({exc})") from None
        check_group_closed(ops)
        return tabulated_or_ops(ops)
    sg = gemmi.find_spacegroup_by_name(text)
    if sg is not None:
        return sg
    try:
        return tabulated_or_ops(gemmi.symops_from_hall(text))
    except Exception:
        raise CrystalError(f"unknown space group {text!r} (neither a Hermann-Mauguin nor a Hall symbol)") from None


class Crystal:
    """A crystal structure: cell, space group and asymmetric unit.

    ``space_group`` is a ``gemmi.SpaceGroup`` whenever gemmi tabulates a setting with exactly these
    operations (any of its settings: P 1 21/n 1, P b n m, ...), otherwise a ``gemmi.GroupOps`` holding
    the operations as given. ``symops`` always lists every operation as an xyz triplet.

    On construction, sites within ``special_tolerance`` Å of a special position are moved exactly onto
    it (average over the site-symmetry group), anisotropic U are made exactly site-symmetric, and
    ``u_iso`` of anisotropic sites is set to U_eq; ``sites`` holds these cleaned values.
    """

    def __init__(self, cell: Sequence[float], space_group: str | gemmi.SpaceGroup | gemmi.GroupOps,
                 sites: Sequence[Site], name: str = "", *,
                 special_tolerance: float = SPECIAL_POSITION_TOLERANCE):
        cell = tuple(float(v) for v in cell)
        if len(cell) != 6 or not all(math.isfinite(v) for v in cell):
            raise CrystalError(f"cell must be 6 finite numbers (a, b, c, alpha, beta, gamma), got {cell}")
        if min(cell[:3]) <= 0 or not all(0 < v < 180 for v in cell[3:]):
            raise CrystalError(f"cell lengths must be > 0 and angles in (0, 180) degrees, got {cell}")
        gcell = gemmi.UnitCell(*cell)
        if not (gcell.volume > 0 and math.isfinite(gcell.volume)):
            raise CrystalError(f"cell angles {cell[3:]} do not make a cell of positive volume")
        self.cell: tuple[float, ...] = cell
        self.name: str = str(name)
        self.space_group = _resolve_space_group(space_group)
        self.special_tolerance = float(special_tolerance)
        self._gcell = gcell
        self._orth = np.array(gcell.orth.mat.tolist(), dtype=float)
        self._frac = np.linalg.inv(self._orth)
        self._rot, self._tran = op_arrays(group_ops(self.space_group))
        self._rc = self._orth @ self._rot @ self._frac

        sites = list(sites)
        if not sites:
            raise CrystalError(f"crystal {self.name!r} has no atoms")
        labels = [s.label for s in sites]
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dupes:
            raise CrystalError(f"duplicate site labels: {', '.join(dupes)}")
        cleaned: list[Site] = []
        symmetries: list[SiteSymmetry] = []
        for site in sites:
            clean, sym = self._clean_site(site)
            cleaned.append(clean)
            symmetries.append(sym)
        self.sites: tuple[Site, ...] = tuple(cleaned)
        self._symmetry: tuple[SiteSymmetry, ...] = tuple(symmetries)
        self._build_images()

    # -- construction helpers -------------------------------------------------------------------
    def _clean_site(self, site: Site) -> tuple[Site, SiteSymmetry]:
        where = f"site {site.label!r}"
        try:
            element = normalise_element(site.element)
        except CrystalError:
            raise CrystalError(f"{where}: unknown element {site.element!r}") from None
        frac = np.asarray(site.frac, dtype=float).reshape(-1)
        if frac.shape != (3,) or not np.all(np.isfinite(frac)):
            raise CrystalError(f"{where}: fractional coordinates must be 3 finite numbers, got {site.frac}")
        occ = float(site.occupancy)
        if not math.isfinite(occ) or occ < 0:
            raise CrystalError(f"{where}: occupancy must be a finite number >= 0, got {site.occupancy}")
        sym = analyse_site(frac, self._rot, self._tran, self._orth, self.special_tolerance, label=site.label)
        if site.u_aniso is not None:
            u6 = np.asarray(site.u_aniso, dtype=float).reshape(-1)
            if u6.shape != (6,) or not np.all(np.isfinite(u6)):
                raise CrystalError(f"{where}: u_aniso must be 6 finite numbers (U11 U22 U33 U12 U13 U23)")
            u_given = u_cif_to_cart(u6, self._orth, self._frac)
            u_cart = sym.symmetrise_u(u_given)
            if np.linalg.eigvalsh(u_cart).min() <= 0:
                raise CrystalError(f"{where}: anisotropic U {tuple(u6)} is not positive definite")
            if np.max(np.abs(u_cart - u_given)) < 1e-12:  # already site-symmetric: keep the given digits
                u_cart = u_given
                u_aniso = tuple(float(v) for v in u6)
            else:
                u_aniso = tuple(float(v) for v in u_cart_to_cif(u_cart, self._orth, self._frac))
            u_iso = float(np.trace(u_cart) / 3.0)
        else:
            u_iso = float(site.u_iso)
            if not math.isfinite(u_iso) or u_iso < 0:
                raise CrystalError(f"{where}: U_iso must be a finite number >= 0, got {site.u_iso}")
            u_aniso = None
        clean = Site(label=str(site.label), element=element, frac=tuple(float(v) for v in sym.frac),
                     occupancy=occ, u_iso=u_iso, u_aniso=u_aniso)
        return clean, sym

    def _build_images(self) -> None:
        site_index, op_index, trans = [], [], []
        for i, sym in enumerate(self._symmetry):
            for op, shift in zip(sym.orbit_ops, sym.orbit_shifts):
                site_index.append(i)
                op_index.append(int(op))
                trans.append(self._tran[op] + shift)
        self._img_site = np.array(site_index, dtype=np.int64)
        self._img_op = np.array(op_index, dtype=np.int64)
        self._img_rot = self._rot[self._img_op]
        self._img_rc = self._rc[self._img_op]
        self._img_trans = np.stack(trans)

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def from_cif(cls, path: str | Path, block: str | int | None = None) -> "Crystal":
        """Read a small-molecule CIF (gemmi). The symmetry is the file's own list of operations when
        present, else its Hall symbol, else its H-M symbol; B values are converted to U.
        ``block``: a block name, an index, or None for the first block with atom sites."""
        from edwidgets.crystal.cif_io import read_cif

        return read_cif(cls, path, block)

    def to_cif_string(self) -> str:
        """The structure as CIF text (cell, all operations, sites, occupancies, Uiso/Uani)."""
        from edwidgets.crystal.cif_io import crystal_to_cif_string

        return crystal_to_cif_string(self)

    def to_cif(self, path: str | Path) -> Path:
        """Write the structure to a CIF file atomically; returns the path."""
        return atomic_write_text(path, self.to_cif_string())

    def replace(self, *, cell=None, space_group=None, sites=None, name=None) -> "Crystal":
        """A new Crystal with some of cell, space group, sites or name replaced."""
        return Crystal(self.cell if cell is None else cell,
                       self.space_group if space_group is None else space_group,
                       self.sites if sites is None else sites,
                       self.name if name is None else name,
                       special_tolerance=self.special_tolerance)

    # -- geometry -------------------------------------------------------------------------------
    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return float(self._gcell.volume)

    @property
    def ops(self) -> gemmi.GroupOps:
        """All operations of the space group as a gemmi.GroupOps."""
        return group_ops(self.space_group)

    @property
    def symops(self) -> tuple[str, ...]:
        """Every operation (symmetry x centring) as an xyz triplet, identity first."""
        return tuple(op_triplets(self.ops))

    @property
    def space_group_name(self) -> str:
        return space_group_name(self.space_group)

    @property
    def is_centrosymmetric(self) -> bool:
        return bool(self.ops.is_centrosymmetric())

    @property
    def gemmi_cell(self) -> gemmi.UnitCell:
        return gemmi.UnitCell(*self.cell)

    def real_basis(self) -> np.ndarray:
        """3x3 matrix A whose columns are a, b, c in Cartesian Å (gemmi's cell.orth.mat)."""
        return self._orth.copy()

    def reciprocal_basis(self) -> np.ndarray:
        """3x3 matrix B = inv(A)ᵀ with g_cart = B @ hkl in Å⁻¹ (no 2π)."""
        return self._frac.T.copy()

    def site_symmetry(self, index: int) -> SiteSymmetry:
        """Site-symmetry analysis (free directions, stabiliser, images) of ASU site ``index``."""
        return self._symmetry[index]

    @property
    def multiplicities(self) -> tuple[int, ...]:
        """Number of distinct images of each ASU site in the unit cell."""
        return tuple(s.multiplicity for s in self._symmetry)

    @property
    def n_atoms_cell(self) -> int:
        return len(self._img_site)

    def site_u_cart(self) -> np.ndarray:
        """Cartesian U (Å²) of each ASU site, [n_sites, 3, 3] (U_iso I for isotropic sites)."""
        out = []
        for s in self.sites:
            if s.u_aniso is None:
                out.append(np.eye(3) * s.u_iso)
            else:
                out.append(u_cif_to_cart(s.u_aniso, self._orth, self._frac))
        return np.stack(out)

    # -- parameters and expansion ---------------------------------------------------------------
    def parameters(self, *, anisotropic: bool | None = None, dtype: torch.dtype = torch.float64,
                   device=None) -> AsuParameters:
        """Free refinement parameters starting at this structure.

        ``anisotropic``: None keeps each site as it is (Uani sites anisotropic, Uiso sites isotropic);
        True makes every site anisotropic (isotropic ones start at U_iso I); False makes every site
        isotropic (anisotropic ones start at U_eq)."""
        if anisotropic is None:
            flags = [s.u_aniso is not None for s in self.sites]
        else:
            flags = [bool(anisotropic)] * len(self.sites)
        return AsuParameters(self._symmetry, list(self.site_u_cart()), flags,
                             [s.occupancy for s in self.sites], self._orth, dtype=dtype, device=device)

    def _check_params(self, params: AsuParameters) -> None:
        if (params.n_sites != len(self.sites)
                or params.n_free_per_site != tuple(s.n_free for s in self._symmetry)):
            raise CrystalError("these AsuParameters belong to a different asymmetric unit "
                               f"({params.n_sites} sites) than crystal {self.name!r} ({len(self.sites)} sites)")

    def expand(self, params: AsuParameters | None = None) -> CellAtoms:
        """Every atom of the unit cell, differentiable with respect to ``params``
        (None: the stored values, without gradients)."""
        if params is None:
            with torch.no_grad():
                return self.expand(self.parameters())
        self._check_params(params)
        kw = dict(dtype=params.reference_frac.dtype, device=params.reference_frac.device)
        site = torch.as_tensor(self._img_site, device=kw["device"])
        rot = torch.as_tensor(self._img_rot, **kw)
        rc = torch.as_tensor(self._img_rc, **kw)
        trans = torch.as_tensor(self._img_trans, **kw)
        x = params.site_frac()[site]
        u = params.site_u_cart()[site]
        frac = torch.einsum("nij,nj->ni", rot, x) + trans
        u_cart = rc @ u @ rc.transpose(-1, -2)
        return CellAtoms(frac=frac, u_cart=u_cart, occupancy=params.occupancy[site],
                         elements=tuple(self.sites[i].element for i in self._img_site),
                         site_index=site, op_index=torch.as_tensor(self._img_op, device=kw["device"]))

    def with_parameters(self, params: AsuParameters) -> "Crystal":
        """A new Crystal holding the (refined) values of ``params``."""
        self._check_params(params)
        with torch.no_grad():
            frac = params.site_frac().detach().cpu().double().numpy()
            u_cart = params.site_u_cart().detach().cpu().double().numpy()
        sites = []
        for i, s in enumerate(self.sites):
            u_iso = float(np.trace(u_cart[i]) / 3.0)
            if params.site_anisotropic[i]:
                u_aniso = tuple(float(v) for v in u_cart_to_cif(u_cart[i], self._orth, self._frac))
            else:
                u_aniso = None
            sites.append(dataclasses.replace(s, frac=tuple(float(v) for v in frac[i]), u_iso=u_iso,
                                             u_aniso=u_aniso))
        return self.replace(sites=sites)

    def perturbed(self, max_displacement: float, seed: int, *, u_scale: float | None = None,
                  isotropic: bool = False, u_start: float | None = None) -> "Crystal":
        """A start model for a synthetic benchmark.

        Each site moves by a uniform random amount in [-Δ, Δ] Å along each of its free orthonormal
        Cartesian directions (so special positions stay special; general positions move up to Δ√3).
        Every U is multiplied by ``u_scale``, by default ``1 + Δ/Å`` ("in proportion to the
        displacement": Δ = 0.2 Å gives U × 1.2). ``isotropic=True`` replaces anisotropic U by U_eq.
        ``u_start`` instead sets every site to that isotropic U (Å²), as in the start models published
        with the authors' code (0.025 / 0.05 / 0.1 Å² for Δ = 0.1 / 0.2 / 0.3 Å)."""
        delta = float(max_displacement)
        if not math.isfinite(delta) or delta < 0:
            raise CrystalError(f"max_displacement must be a finite number >= 0, got {max_displacement}")
        scale = 1.0 + delta if u_scale is None else float(u_scale)
        if not math.isfinite(scale) or scale <= 0:
            raise CrystalError(f"u_scale must be a finite positive number, got {u_scale}")
        if u_start is not None and not (math.isfinite(float(u_start)) and float(u_start) >= 0):
            raise CrystalError(f"u_start must be a finite number >= 0, got {u_start}")
        rng = np.random.default_rng(seed)
        sites = []
        for s, sym in zip(self.sites, self._symmetry):
            p = rng.uniform(-delta, delta, size=sym.n_free)
            frac = sym.frac + sym.free_frac @ p
            if u_start is not None:
                new = dataclasses.replace(s, frac=tuple(frac), u_iso=float(u_start), u_aniso=None)
            elif s.u_aniso is None or isotropic:
                new = dataclasses.replace(s, frac=tuple(frac), u_iso=s.u_iso * scale, u_aniso=None)
            else:
                new = dataclasses.replace(s, frac=tuple(frac), u_iso=s.u_iso * scale,
                                          u_aniso=tuple(v * scale for v in s.u_aniso))
            sites.append(new)
        return self.replace(sites=sites)

    def inverted(self) -> "Crystal":
        """The enantiomorph: x -> -x (+ the origin shift of gemmi's change-of-hand operator) with the
        conjugated operations, e.g. P3₂21 -> P3₁21; U is unchanged (inversion commutes with it)."""
        shift, ops = inverted_setting(self.space_group)
        sites = [dataclasses.replace(s, frac=tuple(float(v) for v in np.mod(-np.asarray(s.frac) + shift, 1.0)))
                 for s in self.sites]
        name = self.name[:-len("_inverted")] if self.name.endswith("_inverted") else self.name + "_inverted"
        return Crystal(self.cell, tabulated_or_ops(ops), sites, name,
                       special_tolerance=self.special_tolerance)

    # -- display --------------------------------------------------------------------------------
    def summary(self) -> str:
        a, b, c, al, be, ga = self.cell
        lines = [
            f"Crystal {self.name!r}",
            f"  cell  a={a:.5f} b={b:.5f} c={c:.5f} Å  alpha={al:.4f} beta={be:.4f} gamma={ga:.4f}°"
            f"  V={self.volume:.3f} Å³",
            f"  space group {self.space_group_name}  ({len(self.symops)} operations, "
            f"{'centrosymmetric' if self.is_centrosymmetric else 'non-centrosymmetric'})",
            f"  {len(self.sites)} ASU sites, {self.n_atoms_cell} atoms in the cell",
            "  label    el        x         y         z     occ    Uiso/eq   mult  free  adp",
        ]
        for s, sym in zip(self.sites, self._symmetry):
            x, y, z = s.frac
            lines.append(f"  {s.label:<8s} {s.element:<3s} {x:9.5f} {y:9.5f} {z:9.5f} {s.occupancy:6.3f} "
                         f"{s.u_iso:9.5f}  {sym.multiplicity:4d}  {sym.n_free:4d}  "
                         f"{'Uani' if s.u_aniso is not None else 'Uiso'}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        cell = ", ".join(f"{v:.4f}" for v in self.cell)
        return (f"Crystal(name={self.name!r}, space_group={self.space_group_name!r}, cell=({cell}), "
                f"sites={len(self.sites)}, atoms_in_cell={self.n_atoms_cell})")


def _nearest_cart(delta_frac: np.ndarray, orth: np.ndarray) -> np.ndarray:
    """Cartesian difference vectors of the nearest lattice images, [n, 3]."""
    wrapped = delta_frac - np.round(delta_frac)
    grid = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    cand = (wrapped[:, None, :] + grid[None]) @ orth.T  # [n, 27, 3]
    best = np.argmin(np.linalg.norm(cand, axis=-1), axis=1)
    return cand[np.arange(len(cand)), best]


def _check_same_asu(a: Crystal, b: Crystal) -> None:
    if len(a.sites) != len(b.sites):
        raise CrystalError(f"cannot compare {a.name!r} ({len(a.sites)} sites) and {b.name!r} ({len(b.sites)} sites)")
    for sa, sb in zip(a.sites, b.sites):
        if sa.element != sb.element:
            raise CrystalError(f"sites do not correspond: {sa.label} is {sa.element}, {sb.label} is {sb.element}")


def asu_rmsd(a: Crystal, b: Crystal) -> float:
    """RMS Cartesian distance (Å, in a's cell) between corresponding ASU sites, each to the nearest
    lattice image: sqrt(mean_i |r_i(b) - r_i(a)|²). Symmetry-equivalent positions are *not* matched."""
    _check_same_asu(a, b)
    delta = np.array([sb.frac for sb in b.sites]) - np.array([sa.frac for sa in a.sites])
    d = _nearest_cart(delta, a.real_basis())
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def adp_frobenius(a: Crystal, b: Crystal) -> float:
    """RMS over ASU sites of the Frobenius norm of the Cartesian U difference (Å²):
    sqrt(mean_i ||U_i(a) - U_i(b)||_F²). Isotropic sites count as U_iso I."""
    _check_same_asu(a, b)
    diff = a.site_u_cart() - b.site_u_cart()
    return float(np.sqrt(np.mean(np.sum(diff * diff, axis=(1, 2)))))
