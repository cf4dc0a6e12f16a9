"""Synthetic 3D-ED datasets after the paper's protocol (Methods 4.4; physics-notes §10).

A tilt series of continuous-rotation frames of a known structure, simulated with the same
forward model the refinement uses, at a known thickness profile; intensities scaled so the
brightest reflection equals I_max, reflections below one count dropped, Poisson noise, σ = √I.
Everything is seeded and reproducible, and a dataset is a PETS2 ``.cif_pets`` file that
:func:`edwidgets.experiment.pets.read_pets` reads back identically (truth kept in a JSON sidecar).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import ExperimentError
from ..io_utils import atomic_write_text
from ..physics.beams import excitation_errors, reciprocal_points_within
from ..physics.constants import electron_wavelength
from . import geometry
from .forward import ForwardModel
from .frames import cell_bases
from .pets import PetsData, write_pets
from .pets_experiment import experiment_from_pets

PROFILES = ("smooth_random", "sine", "constant", "plate")


def thickness_profile(kind: str, angles_deg, *, mean: float = 800.0, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """Thickness (Å) vs tilt: "smooth_random" (a few random low-order modes), "sine" (a
    non-convex sine-like profile, Supplementary Note 1), "constant", or "plate" (t/cos α)."""
    angles = np.asarray(angles_deg, float)
    span = max(np.ptp(angles), 1e-9)
    u = 2 * (angles - angles.min()) / span - 1  # [-1, 1]
    if kind == "constant":
        return np.full_like(angles, mean)
    if kind == "plate":
        return mean / np.cos(np.radians(angles))
    if kind == "sine":
        return mean * (1 + amplitude * np.sin(1.5 * math.pi * u + 0.3))
    if kind == "smooth_random":
        rng = np.random.default_rng(seed)
        profile = np.zeros_like(u)
        for order in (1, 2, 3):
            profile += rng.uniform(-1, 1) / order * np.cos(order * math.pi * (u + 1) / 2 + rng.uniform(0, 2 * math.pi))
        profile /= max(np.max(np.abs(profile)), 1e-12)
        return mean * (1 + amplitude * profile)
    raise ExperimentError(f"unknown thickness profile {kind!r}; choose one of {PROFILES}")


def random_rotation(seed: int) -> np.ndarray:
    """A uniformly random rotation (seeded), via a random unit quaternion."""
    q = np.random.default_rng(seed).normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


@dataclass
class SyntheticDataset:
    """A generated dataset: the PETS2 record, its experiment, and the truth it was made from."""

    pets: PetsData
    truth: object  # Crystal
    thickness: np.ndarray  # true thickness per frame (Å)
    settings: dict = field(default_factory=dict)

    @property
    def experiment(self):
        return experiment_from_pets(self.pets, name=self.settings.get("name", "synthetic"))

    def write(self, path) -> Path:
        """``path`` (.cif_pets) plus ``path.truth.json`` (thickness, settings) and the truth CIF."""
        path = Path(path)
        write_pets(self.pets, path)
        self.truth.to_cif(path.with_suffix(".truth.cif"))
        atomic_write_text(path.with_suffix(".truth.json"), json.dumps(
            {"thickness": self.thickness.tolist(), "frame_angle_deg": self.pets.frames["alpha"].tolist(), "settings": self.settings}, indent=1))
        return path


def make_synthetic_dataset(
    crystal,
    *,
    angle_range: tuple[float, float] = (-40.0, 40.0),
    step_deg: float = 1.0,
    half_width_deg: float = 0.5,
    profile: str = "smooth_random",
    thickness_mean: float = 800.0,
    thickness_amplitude: float = 0.3,
    dynamic_range: float = 1e6,
    noise: bool = True,
    seed: int = 0,
    voltage_kv: float = 200.0,
    resolution: float = 1.2,
    g_max: float | None = None,
    sg_max: float = 0.01,
    n_samples: int = 5,
    rotation_axis_deg: float = 0.0,
    thickness=None,
    name: str | None = None,
) -> SyntheticDataset:
    """Simulate a continuous-rotation tilt series of ``crystal`` (see module docstring).

    ``thickness`` (per frame, Å) overrides the profile. Reflections listed per frame are those
    within ``resolution`` whose Bragg condition is met inside the frame (|s_g| < ΔS_g at the
    centre); the refinement's own selection rules are applied later, as for real data.
    """
    if step_deg <= 0 or half_width_deg <= 0 or angle_range[1] <= angle_range[0]:
        raise ExperimentError("need step_deg > 0, half_width_deg > 0 and angle_range (lo, hi) with lo < hi")
    g_max = resolution if g_max is None else g_max
    alphas = np.arange(angle_range[0], angle_range[1] + 1e-9, step_deg)
    n = len(alphas)
    real, recip = cell_bases(crystal.cell)
    u0 = random_rotation(seed)  # crystal orientation in PETS's frame at α = 0
    ub = u0 @ recip
    wavelength = electron_wavelength(voltage_kv)
    frames = pd.DataFrame({
        "frame": np.arange(1, n + 1),
        "u": 0.0, "v": 0.0, "w": 0.0,
        "precession_angle": half_width_deg,
        "alpha": alphas,
        "beta": 0.0,
        "omega": rotation_axis_deg,
        "scale": 1.0,
    })
    gonio = geometry.goniometer_rotations(alphas, 0.0, rotation_axis_deg)
    zone = np.einsum("nji,j->ni", gonio @ ub, np.array([0.0, 0.0, 1.0]))  # (G UB)ᵀ ẑ, PETS's uvw
    zone /= np.abs(zone).max(axis=1, keepdims=True)
    frames[["u", "v", "w"]] = np.round(zone, 5)
    probe = PetsData(path=None, wavelength=wavelength, cell=tuple(crystal.cell), ub=ub, geometry="continuous",
                     precession_angle_deg=None, rotation_axis_deg=rotation_axis_deg, mosaicity_deg=0.0,
                     details={}, frames=frames, reflections=pd.DataFrame({"h": [0], "k": [0], "l": [1], "I": [1.0], "sigma": [1.0], "frame": [1]}))
    orientations = geometry.frame_orientations(probe)
    axis = geometry.rotation_axis(probe)
    candidates = reciprocal_points_within(recip, resolution)[1:]
    rows = []
    for i in range(n):
        g = candidates @ (orientations[i] @ recip).T
        s = excitation_errors(torch.as_tensor(g), 1 / wavelength).numpy()
        lever = np.linalg.norm(np.cross(g, axis), axis=1)
        inside = np.abs(s) < lever * math.radians(half_width_deg)
        for h, k, l in candidates[inside]:
            rows.append((h, k, l, i + 1))
    if not rows:
        raise ExperimentError("no reflection meets the Bragg condition in any frame: increase resolution or frame width")
    refl = pd.DataFrame(rows, columns=["h", "k", "l", "frame"])
    refl["I"] = 1.0
    refl["sigma"] = 1.0
    refl = refl[["h", "k", "l", "I", "sigma", "frame"]]
    pets = PetsData(path=None, wavelength=wavelength, cell=tuple(crystal.cell), ub=ub, geometry="continuous",
                    precession_angle_deg=None, rotation_axis_deg=rotation_axis_deg, mosaicity_deg=0.0,
                    details={}, frames=frames, reflections=refl)
    if thickness is None:
        thickness = thickness_profile(profile, alphas, mean=thickness_mean, amplitude=thickness_amplitude, seed=seed + 1)
    thickness = np.asarray(thickness, float)
    if thickness.shape != (n,):
        raise ExperimentError(f"thickness must have one value per frame ({n}), got shape {thickness.shape}")
    forward = ForwardModel(experiment_from_pets(pets, name="synthetic"), crystal, g_max=g_max, resolution=resolution,
                           sg_max=sg_max, n_samples=n_samples, selection=None)
    with torch.no_grad():
        clean = forward.intensities(torch.as_tensor(thickness)).numpy()
    values = np.zeros(len(refl))
    values[forward.rows_in_data] = clean
    values *= dynamic_range / values.max()
    keep = values >= 1.0  # detector floor: one count
    values = values[keep]
    if noise:
        gen = torch.Generator().manual_seed(seed + 2)
        values = torch.poisson(torch.as_tensor(values), generator=gen).numpy()
    refl = refl[keep].copy()
    refl["I"] = values
    refl["sigma"] = np.sqrt(np.maximum(values, 1.0))  # σ = √I; one count where Poisson gave 0
    pets = PetsData(path=None, wavelength=wavelength, cell=tuple(crystal.cell), ub=ub, geometry="continuous",
                    precession_angle_deg=None, rotation_axis_deg=rotation_axis_deg, mosaicity_deg=0.0,
                    details={}, frames=frames, reflections=refl.reset_index(drop=True))
    settings = dict(name=name or f"synthetic-{crystal.name or 'crystal'}", profile=profile, thickness_mean=thickness_mean,
                    thickness_amplitude=thickness_amplitude, dynamic_range=dynamic_range, noise=noise, seed=seed,
                    voltage_kv=voltage_kv, resolution=resolution, g_max=g_max, sg_max=sg_max, n_samples=n_samples,
                    half_width_deg=half_width_deg, step_deg=step_deg, angle_range=list(angle_range))
    return SyntheticDataset(pets=pets, truth=crystal, thickness=thickness, settings=settings)
