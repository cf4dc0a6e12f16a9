"""edwidgets: quantitative 3D electron diffraction with a differentiable Bloch-wave simulator.

Start with :func:`simulate_pattern` (one call from a crystal to a pattern) and
:class:`Crystal` (``Crystal.from_cif(path)``).
"""
__version__ = "0.1.0"

from .simulation import kinematic_pattern, simulate_pattern, structure_factors  # noqa: E402

__all__ = ["Crystal", "simulate_pattern", "kinematic_pattern", "structure_factors", "__version__"]


def __getattr__(name):
    # Crystal lives in edwidgets.crystal; imported lazily so the physics can load without it.
    if name == "Crystal":
        from .crystal import Crystal

        return Crystal
    raise AttributeError(f"module 'edwidgets' has no attribute {name!r}")
