"""Structures shipped with edwidgets (edwidgets/data/structures/*.cif), each citing its source."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from edwidgets.errors import CrystalError


def _folder() -> Path:
    return Path(str(resources.files("edwidgets") / "data" / "structures"))


def available_structures() -> tuple[str, ...]:
    """Names accepted by :func:`load_structure` (file names without ``.cif``), sorted."""
    return tuple(sorted(p.stem for p in _folder().glob("*.cif")))


def structure_path(name: str) -> Path:
    """Path of the shipped CIF ``name`` (with or without ``.cif``)."""
    stem = name[:-4] if name.endswith(".cif") else name
    path = _folder() / f"{stem}.cif"
    if not path.is_file():
        raise CrystalError(f"no shipped structure named {name!r}; available: {', '.join(available_structures())}")
    return path


def load_structure(name: str):
    """Load a shipped structure as a :class:`~edwidgets.crystal.Crystal` (see ``available_structures()``)."""
    from edwidgets.crystal.structure import Crystal

    return Crystal.from_cif(structure_path(name))
