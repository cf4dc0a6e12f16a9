"""The experiment record: frames (orientation, angular range, tilt angle) and reflections.

Independent of file formats: :func:`experiment_from_pets` (in ``pets_experiment``) and the
synthetic generator both produce an :class:`Experiment`. Geometry conventions are those of
``edwidgets.physics.beams`` (beam along +z, R maps crystal Cartesian → lab).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import gemmi
import numpy as np
import pandas as pd

from ..errors import ExperimentError
from ..physics.beams import rotation_matrix
from ..physics.constants import electron_wavelength, voltage_from_wavelength

GEOMETRIES = ("continuous", "precession", "still")
CELL_WARN = 0.01
CELL_REFUSE = 0.05


def cell_bases(cell) -> tuple[np.ndarray, np.ndarray]:
    """(real basis A, reciprocal basis B) for a cell (a, b, c, α, β, γ), gemmi orthogonalisation."""
    uc = gemmi.UnitCell(*cell)
    real = np.array(uc.orth.mat.tolist())
    return real, np.linalg.inv(real).T


@dataclass(frozen=True)
class Experiment:
    """A 3D-ED measurement ready for simulation.

    orientations [F, 3, 3]: crystal → lab rotation at each frame's centre; rotation_axis: unit
    goniometer axis in the lab; half_width_deg [F]: half the angular range a continuous-rotation
    frame integrates over; frame_angle_deg [F]: goniometer tilt of each frame (thickness models
    use it); reflections: DataFrame with h, k, l, I, sigma, frame (0-based frame index).
    """

    cell: tuple[float, ...]
    voltage_kv: float
    orientations: np.ndarray
    rotation_axis: np.ndarray
    half_width_deg: np.ndarray
    frame_angle_deg: np.ndarray
    reflections: pd.DataFrame
    geometry: str = "continuous"
    precession_angle_deg: float = 0.0
    frame_ids: np.ndarray | None = None
    frame_scale: np.ndarray | None = None  # scales in the data file (information only)
    name: str = ""
    source: str | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        where = self.source or self.name or "experiment"
        n = len(self.orientations)
        if self.geometry not in GEOMETRIES:
            raise ExperimentError(f"{where}: unknown geometry {self.geometry!r}; expected one of {GEOMETRIES}")
        if n == 0:
            raise ExperimentError(f"{where}: the experiment has no frames")
        for name in ("half_width_deg", "frame_angle_deg"):
            if len(getattr(self, name)) != n:
                raise ExperimentError(f"{where}: {name} has {len(getattr(self, name))} values for {n} frames")
        required = {"h", "k", "l", "I", "sigma", "frame"}
        missing = required - set(self.reflections.columns)
        if missing:
            raise ExperimentError(f"{where}: reflection table lacks column(s) {sorted(missing)}")
        if len(self.reflections) == 0:
            raise ExperimentError(f"{where}: no reflections")
        values = self.reflections[["I", "sigma"]].to_numpy(float)
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values).all(1))[:5]
            raise ExperimentError(f"{where}: non-finite I or sigma in reflection row(s) {bad.tolist()}")
        if np.any(values[:, 1] < 0):
            bad = np.flatnonzero(values[:, 1] < 0)[:5]
            raise ExperimentError(f"{where}: negative sigma in reflection row(s) {bad.tolist()}")
        frames = self.reflections["frame"].to_numpy()
        if frames.min() < 0 or frames.max() >= n:
            raise ExperimentError(f"{where}: reflections refer to frame indices outside 0..{n - 1}")
        if not np.all(np.isfinite(self.orientations)):
            raise ExperimentError(f"{where}: non-finite frame orientation")

    # --- derived quantities -------------------------------------------------
    @property
    def n_frames(self) -> int:
        return len(self.orientations)

    @property
    def wavelength(self) -> float:
        return electron_wavelength(self.voltage_kv)

    def bases(self) -> tuple[np.ndarray, np.ndarray]:
        return cell_bases(self.cell)

    def reflections_per_frame(self) -> np.ndarray:
        return np.bincount(self.reflections["frame"].to_numpy(), minlength=self.n_frames)

    def sample_orientations(self, frame: int, n_samples: int) -> np.ndarray:
        """[S, 3, 3] orientations a frame integrates over.

        Continuous rotation: S equally spaced angles (cell midpoints) over ±half-width about the
        goniometer axis. Precession: S azimuths ψ of the cone R_z(ψ) R_x(φ) R_z(−ψ). Still: the centre.
        """
        centre = self.orientations[frame]
        if self.geometry == "still" or n_samples <= 1 and self.geometry != "precession":
            return centre[None].copy()
        if self.geometry == "continuous":
            hw = math.radians(float(self.half_width_deg[frame]))
            angles = (np.arange(n_samples) + 0.5) / n_samples * 2 * hw - hw
            return np.stack([rotation_matrix(self.rotation_axis, a) @ centre for a in angles])
        phi = math.radians(self.precession_angle_deg)
        tilt = rotation_matrix((1.0, 0.0, 0.0), phi)
        psis = np.arange(n_samples) / n_samples * 2 * math.pi
        out = []
        for psi in psis:
            rz = rotation_matrix((0.0, 0.0, 1.0), psi)
            out.append(rz @ tilt @ rz.T @ centre)
        return np.stack(out)

    def auto_samples(self, thickness_max: float, g_max: float) -> int:
        """Samples per frame from the rules of physics-notes §7 (rocking curve / precession cone)."""
        if self.geometry == "still":
            return 1
        if self.geometry == "continuous":
            step = 1.0 / (thickness_max * g_max)  # Δθ < 1/(t |g⊥|)
            return max(3, int(math.ceil(2 * math.radians(float(np.max(self.half_width_deg))) / step)))
        step = 1.0 / (thickness_max * g_max * math.radians(self.precession_angle_deg))
        return max(8, int(math.ceil(2 * math.pi / step)))

    def check_cell(self, crystal_cell, structure_name: str = "structure") -> None:
        """Warn when the structure's cell differs from the data's by > 1 %; refuse > 5 %."""
        ours = np.asarray(self.cell, float)
        theirs = np.asarray(crystal_cell, float)
        rel = np.abs(theirs - ours) / ours
        worst = int(np.argmax(rel))
        names = ("a", "b", "c", "alpha", "beta", "gamma")
        text = (f"{structure_name} cell {names[worst]} = {theirs[worst]:.4f} differs from the data's "
                f"{ours[worst]:.4f} ({self.source or self.name}) by {100 * rel[worst]:.1f} %")
        if rel[worst] > CELL_REFUSE:
            raise ExperimentError(text + "; more than 5 %: wrong structure or wrong data file? The data's cell is used for geometry.")
        if rel[worst] > CELL_WARN:
            warnings.warn(text + "; the data's cell is used for geometry", stacklevel=2)

    def with_orientations(self, orientations: np.ndarray) -> "Experiment":
        return replace(self, orientations=np.asarray(orientations, float))

    def subset_frames(self, frames) -> "Experiment":
        """A new experiment with only the given frame indices (reflections renumbered)."""
        frames = np.asarray(frames, int)
        remap = -np.ones(self.n_frames, int)
        remap[frames] = np.arange(len(frames))
        refl = self.reflections[np.isin(self.reflections["frame"], frames)].copy()
        refl["frame"] = remap[refl["frame"].to_numpy()]
        pick = lambda a: None if a is None else np.asarray(a)[frames]  # noqa: E731
        return replace(
            self,
            orientations=self.orientations[frames],
            half_width_deg=np.asarray(self.half_width_deg)[frames],
            frame_angle_deg=np.asarray(self.frame_angle_deg)[frames],
            reflections=refl.reset_index(drop=True),
            frame_ids=pick(self.frame_ids),
            frame_scale=pick(self.frame_scale),
        )


def voltage_of(wavelength: float) -> float:
    """Accelerating voltage (kV) for a wavelength read from a data file, rounded to 0.1 kV."""
    return round(voltage_from_wavelength(wavelength), 1)
