"""PETS2 data → :class:`Experiment` (the geometry chain of physics-notes §7)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError
from . import geometry
from .frames import Experiment, voltage_of
from .pets import PetsData, read_pets


def experiment_from_pets(source: str | Path | PetsData, *, name: str | None = None) -> Experiment:
    """Read a ``.cif_pets`` (or take parsed :class:`PetsData`) and build the experiment.

    Frame orientations use the file's UB and the file's cell (the authority for geometry);
    a continuous-rotation frame integrates over ± its ``precession_angle`` column (PETS2 writes
    the virtual frame's half range there); precession frames use the cone semi-angle.
    """
    data = source if isinstance(source, PetsData) else read_pets(source)
    where = str(data.path) if data.path is not None else (name or "PETS data")
    if data.n_frames == 0:
        raise InputFileError(data.path, "no frames (empty _diffrn_zone_axis loop)")
    if len(data.reflections) == 0:
        raise InputFileError(data.path, "no reflections (empty _refln loop)")
    orientations = geometry.frame_orientations(data)
    row_of_frame = {int(f): i for i, f in enumerate(data.frame_ids)}
    reflections = data.reflections[["h", "k", "l", "I", "sigma"]].copy()
    try:
        reflections["frame"] = [row_of_frame[int(f)] for f in data.reflections["frame"]]
    except KeyError as exc:  # the reader checks this too; keep the message clear if built by hand
        raise InputFileError(data.path, f"reflection refers to frame {exc.args[0]} that is not in the frame list") from None
    if data.geometry == "precession":
        half_width = np.zeros(data.n_frames)
        precession = float(data.precession_angle_deg or np.median(data.frames.get("precession_angle", [0.0])))
        kind = "precession"
    else:
        hw = data.frame_half_widths_deg
        half_width = np.zeros(data.n_frames) if hw is None else hw
        precession = 0.0
        kind = "continuous" if np.any(half_width > 0) else "still"
    return Experiment(
        cell=tuple(data.cell),
        voltage_kv=voltage_of(data.wavelength),
        orientations=orientations,
        rotation_axis=geometry.rotation_axis(data),
        half_width_deg=np.asarray(half_width, float),
        frame_angle_deg=geometry.frame_angles(data),
        reflections=reflections.reset_index(drop=True),
        geometry=kind,
        precession_angle_deg=precession,
        frame_ids=data.frame_ids.copy(),
        frame_scale=data.frames["scale"].to_numpy(float) if "scale" in data.frames else None,
        name=name or (Path(data.path).stem if data.path is not None else "pets"),
        source=where,
        metadata={"mosaicity_deg": data.mosaicity_deg, "rotation_axis_deg": data.rotation_axis_deg},
    )
