"""Reference models (start, truth) the dashboard overlays on the live refinement.

No UI imports here: the demo job and scripts use these without ipywidgets.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edwidgets.errors import EdwidgetsError
from edwidgets.refine.events import AtomRecord, Snapshot, atom_records


@dataclass(frozen=True)
class ReferenceModel:
    """A fixed structure and thickness profile to compare the refinement with.

    ``thickness`` is per frame (Å), aligned with ``frame_angle_deg`` when that is given, else
    with the job's frames.  ``grid_thickness`` holds per-frame grid-search values when known.
    """

    atoms: tuple[AtomRecord, ...] = ()
    thickness: np.ndarray | None = None
    frame_angle_deg: np.ndarray | None = None
    grid_thickness: np.ndarray | None = None
    label: str = ""


def as_reference(value: Any, label: str) -> ReferenceModel | None:
    """Coerce ``None``, a :class:`ReferenceModel`, a :class:`Snapshot` or a mapping with keys
    ``atoms``, ``thickness``, ``frame_angle_deg``, ``grid_thickness`` to a ReferenceModel."""
    if value is None:
        return None
    if isinstance(value, ReferenceModel):
        return value
    if isinstance(value, Snapshot):
        return ReferenceModel(
            atoms=tuple(value.atoms),
            thickness=np.asarray(value.thickness, float).copy(),
            frame_angle_deg=np.asarray(value.frame_angle_deg, float).copy(),
            label=label,
        )
    if isinstance(value, Mapping):
        unknown = set(value) - {"atoms", "thickness", "frame_angle_deg", "grid_thickness", "label"}
        if unknown:
            raise EdwidgetsError(f"{label} reference: unknown keys {sorted(unknown)}")
        atoms = tuple(value.get("atoms", ()))
        for atom in atoms:
            if not isinstance(atom, AtomRecord):
                raise EdwidgetsError(f"{label} reference: atoms must be AtomRecord, got {type(atom).__name__}")

        def arr(key: str) -> np.ndarray | None:
            v = value.get(key)
            return None if v is None else np.asarray(v, dtype=float).ravel().copy()

        return ReferenceModel(
            atoms=atoms,
            thickness=arr("thickness"),
            frame_angle_deg=arr("frame_angle_deg"),
            grid_thickness=arr("grid_thickness"),
            label=str(value.get("label", label)),
        )
    raise EdwidgetsError(
        f"{label} reference must be a ReferenceModel, Snapshot or mapping, not {type(value).__name__}"
    )


def reference_from_crystal(crystal: Any, *, thickness=None, frame_angle_deg=None, grid_thickness=None,
                           label: str = "truth") -> ReferenceModel:
    """A :class:`ReferenceModel` of a known structure (and optionally its thickness profile), e.g.
    the truth of a synthetic dataset, for the dashboard's ``truth=``/``start=`` overlays."""

    def arr(v) -> np.ndarray | None:
        return None if v is None else np.asarray(v, dtype=float).ravel().copy()

    return ReferenceModel(atoms=atom_records(crystal), thickness=arr(thickness), frame_angle_deg=arr(frame_angle_deg),
                          grid_thickness=arr(grid_thickness), label=label)


def fractional_to_cartesian_matrix(cell: Sequence[float]) -> np.ndarray:
    """Orthogonalisation matrix M (rows are nothing special: x_cart = M @ x_frac) with a along x
    and b in the xy plane (the usual crystallographic convention)."""
    a, b, c, alpha, beta, gamma = (float(v) for v in cell)
    if min(a, b, c) <= 0:
        raise EdwidgetsError(f"cell lengths must be positive, got {cell}")
    al, be, ga = np.radians([alpha, beta, gamma])
    cos_al, cos_be, cos_ga, sin_ga = np.cos(al), np.cos(be), np.cos(ga), np.sin(ga)
    volume_factor = 1 - cos_al**2 - cos_be**2 - cos_ga**2 + 2 * cos_al * cos_be * cos_ga
    if volume_factor <= 0:
        raise EdwidgetsError(f"cell angles do not form a cell: {cell}")
    return np.array(
        [
            [a, b * cos_ga, c * cos_be],
            [0.0, b * sin_ga, c * (cos_al - cos_be * cos_ga) / sin_ga],
            [0.0, 0.0, c * np.sqrt(volume_factor) / sin_ga],
        ]
    )


def cell_edges_cartesian(cell: Sequence[float]) -> list[tuple[list[float], list[float]]]:
    """The 12 edges of the unit cell as (start, end) Cartesian points (Å)."""
    m = fractional_to_cartesian_matrix(cell)
    corners = {(i, j, k): m @ np.array([i, j, k], float) for i in (0, 1) for j in (0, 1) for k in (0, 1)}
    edges = []
    for (i, j, k), p in corners.items():
        for di, dj, dk in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
            q = (i + di, j + dj, k + dk)
            if q in corners:
                edges.append((p.tolist(), corners[q].tolist()))
    return edges


def format_with_su(value: float, su: float | None, digits: int = 5) -> str:
    """Crystallographic value(su) notation, e.g. 0.46970(12); plain value when su is unknown."""
    if su is None or not np.isfinite(su) or su <= 0:
        return f"{value:.{digits}f}"
    exponent = int(np.floor(np.log10(su)))
    decimals = -exponent
    if int(su / 10.0**exponent) == 1:  # "rule of 19": keep two digits when the su starts with 1
        decimals += 1
    decimals = min(max(decimals, 0), 8)
    su_digits = int(round(su * 10**decimals))
    return f"{value:.{decimals}f}({su_digits})"
