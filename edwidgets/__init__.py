"""edwidgets: quantitative 3D electron diffraction with a differentiable Bloch-wave simulator.

Start with :func:`simulate_pattern` (one call from a crystal to a pattern) and
:class:`Crystal` (``Crystal.from_cif(path)``).
"""
__version__ = "0.1.0"

from .simulation import kinematic_pattern, simulate_pattern, structure_factors  # noqa: E402

__all__ = ["Crystal", "load_structure", "available_structures", "simulate_pattern", "kinematic_pattern",
           "structure_factors", "__version__"]

_CRYSTAL_NAMES = ("Crystal", "load_structure", "available_structures")
_SUBPACKAGES = ("crystal", "physics", "experiment", "refine", "ui", "cli")


def __getattr__(name):
    # Loaded lazily so the physics imports without the crystal model and nothing imports the UI;
    # ``edwidgets.crystal.load_structure`` works after a bare ``import edwidgets``.
    import importlib

    if name in _CRYSTAL_NAMES:
        return getattr(importlib.import_module(".crystal", __name__), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'edwidgets' has no attribute {name!r}")
