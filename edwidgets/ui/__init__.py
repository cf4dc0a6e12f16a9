"""Jupyter widgets for edwidgets: the live refinement dashboard and teaching widgets.

This is the only subpackage that imports ipywidgets, plotly, anywidget or py3Dmol (install the
``jupyter`` extra).  Names are loaded lazily so that :mod:`edwidgets.ui.demo_job` and
:mod:`edwidgets.ui.reference` stay importable without any UI library.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RefinementDashboard": "edwidgets.ui.dashboard",
    "run_blocking": "edwidgets.ui.blocking",
    "ControlsPanel": "edwidgets.ui.panels",
    "RCurvePanel": "edwidgets.ui.panels",
    "ThicknessPanel": "edwidgets.ui.panels",
    "StructurePanel": "edwidgets.ui.panels",
    "PatternPanel": "edwidgets.ui.panels",
    "ParameterTablePanel": "edwidgets.ui.panels",
    "StatusPanel": "edwidgets.ui.panels",
    "StructureView3D": "edwidgets.ui.viewer3d",
    "PatternExplorer": "edwidgets.ui.teaching",
    "PendellosungExplorer": "edwidgets.ui.teaching",
    "SimulatedJob": "edwidgets.ui.demo_job",
    "ReferenceModel": "edwidgets.ui.reference",
    "reference_from_crystal": "edwidgets.ui.reference",
    "export_figure": "edwidgets.ui.export",
    "per_frame_table": "edwidgets.ui.export",
    "write_per_frame_csv": "edwidgets.ui.export",
    "write_refined_cif": "edwidgets.ui.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edwidgets.ui' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return getattr(module, name)


def __dir__() -> list[str]:
    return __all__
