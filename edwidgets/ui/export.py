"""Exports: figures (HTML, PNG through kaleido), per-frame and atom tables (CSV), the refined CIF."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from edwidgets.errors import EdwidgetsError
from edwidgets.io_utils import atomic_write_bytes, atomic_write_text
from edwidgets.refine.events import RefinementJobLike, Snapshot


class ExportUnavailable(EdwidgetsError):
    """The export needs something that is not there (kaleido, a finished job, ``to_cif``)."""


def export_figure(fig, path: str | os.PathLike, include_plotlyjs: bool | str = True, scale: float = 2.0) -> Path:
    """Write a plotly figure to ``.html`` (self-contained by default) or ``.png``/``.svg``/``.pdf``.

    Static formats need kaleido ≥ 1 and a Chromium it can find (``apt-get install chromium``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return atomic_write_text(path, fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True))
    if suffix in (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp"):
        try:
            import kaleido  # noqa: F401
        except ImportError as exc:
            raise ExportUnavailable(f"{path}: static export needs kaleido (pip install 'edwidgets[jupyter]')") from exc
        try:
            data = fig.to_image(format=suffix[1:], scale=scale)
        except Exception as exc:
            raise ExportUnavailable(f"{path}: kaleido could not render the figure ({type(exc).__name__}: {exc}); "
                                    "it needs a Chromium (apt-get install chromium)") from exc
        return atomic_write_bytes(path, data)
    raise EdwidgetsError(f"{path}: unknown figure format {suffix!r}; use .html, .png, .svg or .pdf")


def per_frame_table(snapshot: Snapshot) -> pd.DataFrame:
    """One row per frame: tilt, thickness, R and scale of the given snapshot."""
    return pd.DataFrame(
        {
            "frame": range(len(snapshot.frame_angle_deg)),
            "angle_deg": snapshot.frame_angle_deg,
            "thickness_A": snapshot.thickness,
            "r_frame": snapshot.frame_r,
            "scale": snapshot.frame_scale,
        }
    )


def atoms_table(snapshot: Snapshot) -> pd.DataFrame:
    rows = []
    for a in snapshot.atoms:
        su = a.frac_su or (None, None, None)
        rows.append({"label": a.label, "element": a.element, "x": a.frac[0], "y": a.frac[1], "z": a.frac[2],
                     "su_x": su[0], "su_y": su[1], "su_z": su[2], "u_iso": a.u_iso, "su_u_iso": a.u_iso_su})
    return pd.DataFrame(rows)


def write_per_frame_csv(snapshot: Snapshot, path: str | os.PathLike) -> Path:
    return atomic_write_text(path, per_frame_table(snapshot).to_csv(index=False))


def write_atoms_csv(snapshot: Snapshot, path: str | os.PathLike) -> Path:
    return atomic_write_text(path, atoms_table(snapshot).to_csv(index=False))


def write_refined_cif(job: RefinementJobLike, path: str | os.PathLike, timeout: float = 0.0) -> Path:
    """Write the result's CIF (``to_cif()`` or ``to_cif_string()``); the job must be done (or finish
    within ``timeout`` s)."""
    try:
        result = job.result(timeout=timeout)
    except TimeoutError as exc:
        raise ExportUnavailable(f"{path}: the refinement is still running; stop it or wait before exporting the CIF") from exc
    to_cif = getattr(result, "to_cif", None) or getattr(result, "to_cif_string", None)
    if not callable(to_cif):
        raise ExportUnavailable(f"{path}: the job's result ({type(result).__name__}) has no to_cif() or to_cif_string()")
    return atomic_write_text(path, to_cif())
