"""A small anywidget around 3Dmol.js that updates structures live without resetting the camera."""
from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from edwidgets.errors import EdwidgetsError
from edwidgets.refine.events import AtomRecord
from edwidgets.ui.reference import cell_edges_cartesian, fractional_to_cartesian_matrix

#: Environment variable naming a local 3Dmol-min.js (or a URL) used instead of the CDN.
THREEDMOL_ENV = "EDWIDGETS_3DMOL_JS"
_FALLBACK_3DMOL_URL = "https://cdn.jsdelivr.net/npm/3dmol@2.5.5/build/3Dmol-min.js"

#: How each overlaid structure is drawn (3Dmol style specs).
ROLE_STYLES: dict[str, dict] = {
    "start": {"sphere": {"radius": 0.3, "color": "#9e9e9e", "opacity": 0.6}},
    "current": {"sphere": {"radius": 0.48, "colorscheme": "Jmol"}},
    "truth": {"sphere": {"radius": 0.62, "color": "#2ca02c", "opacity": 0.3}},
}


def default_3dmol_url() -> str:
    """The CDN URL py3Dmol itself loads (follows the installed py3Dmol), else a pinned jsDelivr URL."""
    try:
        import py3Dmol

        default = inspect.signature(py3Dmol.view.__init__).parameters["js"].default
        if isinstance(default, str) and default.startswith("http"):
            return default
    except Exception:  # py3Dmol missing or its signature changed
        pass
    return _FALLBACK_3DMOL_URL


def resolve_3dmol_js(threedmol_js: str | os.PathLike | None = None) -> tuple[str, str]:
    """Return ``(url, source)``: exactly one is non-empty.

    ``threedmol_js`` (or the ``EDWIDGETS_3DMOL_JS`` environment variable) may be a URL or a local
    file; a local file is read and shipped to the browser through a trait, so no server route is
    needed.  Without either, the CDN URL py3Dmol uses.
    """
    choice = threedmol_js if threedmol_js is not None else os.environ.get(THREEDMOL_ENV) or None
    if choice is None:
        return default_3dmol_url(), ""
    text = str(choice)
    if text.startswith(("http://", "https://")):
        return text, ""
    path = Path(text).expanduser()
    if not path.is_file():
        origin = "threedmol_js" if threedmol_js is not None else THREEDMOL_ENV
        raise EdwidgetsError(f"{path}: 3Dmol.js file not found (from {origin}); run scripts/browser-setup.sh or unset it")
    source = path.read_text(encoding="utf-8")
    if "3Dmol" not in source[:2000] and "$3Dmol" not in source:
        raise EdwidgetsError(f"{path}: does not look like 3Dmol.js")
    return "", source


class StructureView3D(anywidget.AnyWidget):
    """3Dmol.js viewer with the unit cell and several overlaid structures (synced traits)."""

    _esm = Path(__file__).parent / "static" / "viewer3d.js"

    models = traitlets.List(traitlets.Dict()).tag(sync=True)
    cell_edges = traitlets.List().tag(sync=True)
    axis_labels = traitlets.List(traitlets.Dict()).tag(sync=True)
    js_url = traitlets.Unicode("").tag(sync=True)
    js_source = traitlets.Unicode("").tag(sync=True)
    width = traitlets.Unicode("100%").tag(sync=True)
    height = traitlets.Unicode("340px").tag(sync=True)
    background = traitlets.Unicode("white").tag(sync=True)
    load_error = traitlets.Unicode("").tag(sync=True)  # set by the browser if 3Dmol.js failed

    def __init__(self, threedmol_js: str | os.PathLike | None = None, **kwargs) -> None:
        url, source = resolve_3dmol_js(threedmol_js)
        super().__init__(js_url=url, js_source=source, **kwargs)
        self._cell: tuple[float, ...] | None = None

    def set_structures(
        self,
        cell: Sequence[float],
        structures: Mapping[str, Sequence[AtomRecord]],
        label_role: str = "current",
    ) -> None:
        """Show each structure (role → atoms, roles as in :data:`ROLE_STYLES`) in one update."""
        matrix = fractional_to_cartesian_matrix(cell)
        models = []
        for role, atoms in structures.items():
            if not atoms:
                continue
            xyz_cart = [matrix @ np.asarray(atom.frac, float) for atom in atoms]
            lines = [str(len(atoms)), role]
            lines += [f"{atom.element} {p[0]:.5f} {p[1]:.5f} {p[2]:.5f}" for atom, p in zip(atoms, xyz_cart)]
            labels = []
            if role == label_role:
                labels = [
                    {"text": atom.label, "x": float(p[0]), "y": float(p[1]), "z": float(p[2])}
                    for atom, p in zip(atoms, xyz_cart)
                ]
            models.append(
                {"name": role, "xyz": "\n".join(lines) + "\n", "style": ROLE_STYLES.get(role, ROLE_STYLES["current"]), "labels": labels}
            )
        cell_t = tuple(float(v) for v in cell)
        with self.hold_sync():
            if cell_t != self._cell:
                self._cell = cell_t
                self.cell_edges = [list(edge) for edge in cell_edges_cartesian(cell_t)]
                axes = {"a": (1.08, 0, 0), "b": (0, 1.08, 0), "c": (0, 0, 1.08)}
                colors = {"a": "#d62728", "b": "#2ca02c", "c": "#1f77b4"}
                self.axis_labels = [
                    dict(zip(("x", "y", "z"), (float(v) for v in matrix @ np.array(f))), text=name, color=colors[name])
                    for name, f in axes.items()
                ]
            self.models = models
