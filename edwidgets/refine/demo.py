"""``edwidgets demo``: a synthetic quartz refinement from a 0.1 Å random start.

Also holds :func:`synthetic_rotation_experiment`, a tiny self-contained synthetic dataset
(continuous rotation about the lab x axis in 1° steps, reflections near the Ewald condition at
each frame centre, intensities simulated by the same forward model at a known thickness profile,
optionally with Poisson noise) used by the demo and the refinement tests.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..experiment.forward import ForwardModel
from ..experiment.frames import Experiment, cell_bases
from ..physics.beams import excitation_errors, reciprocal_points_within, rotation_matrix
from ..physics.constants import electron_wavelength

QUARTZ_CELL = (4.9226, 4.9226, 5.4003, 90.0, 90.0, 120.0)


def demo_crystal():
    """Quartz P3₂21 (shipped structure if available, else built here)."""
    from ..crystal import Crystal, Site, load_structure
    from ..errors import EdwidgetsError

    try:
        return load_structure("quartz_P3221")
    except EdwidgetsError:
        sites = [Site("Si1", "Si", (0.0, 0.471256, 0.833333), u_iso=0.0092),
                 Site("O1", "O", (0.854729, 0.585819, 0.618682), u_iso=0.0158)]
        return Crystal(QUARTZ_CELL, "P 32 2 1", sites, name="quartz_P3221")


def synthetic_rotation_experiment(crystal, n_frames: int = 6, *, thickness: Callable[[np.ndarray], np.ndarray] | float = 400.0,
                                  g_max: float = 1.2, sg_centre: float = 0.006, sg_max: float = 0.01,
                                  n_samples: int = 3, half_width_deg: float = 0.5, start_angle_deg: float = -2.5,
                                  voltage_kv: float = 200.0, i_max: float | None = 1e6, noise: bool = False,
                                  seed: int = 0, start_orientation: np.ndarray | None = None) -> tuple[Experiment, dict]:
    """A synthetic continuous-rotation experiment whose truth the forward model reaches exactly.

    Frame f is the start orientation turned by (start_angle + f)° about lab x; its reflections are
    the beams with |s_g| < ``sg_centre`` at the frame centre; I_obs are forward-model intensities of
    ``crystal`` at ``thickness`` (Å, a number or a function of the frame angle in degrees), scaled so
    the brightest is ``i_max`` (None: unscaled), optionally Poisson-noised, with σ = √I + 1 (σ = √I
    with noise). Returns (experiment, truth) with truth = {"thickness", "scale", "i_exact"}.
    """
    angles = start_angle_deg + np.arange(n_frames, dtype=float)
    start = start_orientation if start_orientation is not None else (
        rotation_matrix((0.0, 1.0, 0.0), 0.31) @ rotation_matrix((0.0, 0.0, 1.0), 0.23) @ rotation_matrix((1.0, 0.0, 0.0), 0.17))
    orientations = np.stack([rotation_matrix((1.0, 0.0, 0.0), math.radians(a)) @ start for a in angles])
    _, recip = cell_bases(crystal.cell)
    k = 1.0 / electron_wavelength(voltage_kv)
    cand = reciprocal_points_within(recip, g_max)
    cand = cand[np.any(cand != 0, axis=1)]
    rows = []
    for f in range(n_frames):
        g_lab = cand @ recip.T @ orientations[f].T
        s = excitation_errors(torch.as_tensor(g_lab), k).numpy()
        for h in cand[np.abs(s) < sg_centre]:
            rows.append((int(h[0]), int(h[1]), int(h[2]), 1.0, 1.0, f))
    table = pd.DataFrame(rows, columns=["h", "k", "l", "I", "sigma", "frame"])
    exp = Experiment(cell=tuple(crystal.cell), voltage_kv=voltage_kv, orientations=orientations,
                     rotation_axis=np.array([1.0, 0.0, 0.0]), half_width_deg=np.full(n_frames, half_width_deg),
                     frame_angle_deg=angles, reflections=table, name="synthetic")
    t = np.asarray(thickness(angles) if callable(thickness) else np.full(n_frames, float(thickness)), dtype=float)
    forward = ForwardModel(exp, crystal, g_max=g_max, sg_max=sg_max, n_samples=n_samples, selection=None)
    with torch.no_grad():
        exact = forward.intensities(torch.as_tensor(t), atoms=crystal.expand()).cpu().numpy()
    scale = 1.0 if i_max is None else float(i_max) / float(exact.max())
    intensity = exact * scale
    rng = np.random.default_rng(seed)
    if noise:
        intensity = rng.poisson(intensity).astype(float)
        sigma = np.sqrt(np.maximum(intensity, 1.0))
    else:
        sigma = np.sqrt(intensity) + 1.0
    table = table.iloc[forward.rows_in_data].copy()
    table["I"], table["sigma"] = intensity, sigma
    keep = (intensity >= 1.0) if i_max is not None else np.ones(len(table), bool)
    table = table[keep].reset_index(drop=True)
    exp = dataclasses.replace(exp, reflections=table)
    return exp, {"thickness": t, "scale": scale, "i_exact": exact[keep]}


def smooth_profile(angles: np.ndarray, base: float = 600.0, amplitude: float = 120.0) -> np.ndarray:
    """The demo's thickness truth: a gentle, smooth variation with tilt (Å)."""
    u = (angles - angles.min()) / max(np.ptp(angles), 1.0)
    return base + amplitude * np.sin(2.2 * u + 0.3) - 0.5 * amplitude * u**2


def grid_search_thickness(forward, crystal, grid) -> np.ndarray:
    """Best constant thickness of each frame on a grid (wR_all per frame): a simple preparation step.

    The preparation's full-grid search scored with ``crystal``; frames without reflections get NaN.
    """
    from ..experiment.preparation import thickness_search

    with torch.no_grad():
        search = thickness_search(forward, grid, coarse_stride=1, couplings=forward.couplings(crystal.expand()))
    best = search.per_frame.astype(float)
    best[[len(p.rows) == 0 for p in forward.plans]] = np.nan
    return best


def run_demo(args) -> int:
    """Synthetic quartz: ThicknessNN + positions + ADPs from a 0.1 Å random start."""
    from ..crystal import adp_frobenius, asu_rmsd
    from .job import RefinementJob
    from .model import RefinementModel, make_thickness_model
    from .progress import TqdmProgress

    quick = bool(getattr(args, "quick", False))
    out = Path(getattr(args, "out", "edwidgets-demo"))
    threads = getattr(args, "threads", None) or 2
    torch.set_num_threads(threads)
    truth = demo_crystal()
    n_frames, g_max, epochs = (6, 1.0, 40) if quick else (16, 1.2, 300)
    epochs = getattr(args, "epochs", None) or epochs
    t0 = time.perf_counter()
    exp, info = synthetic_rotation_experiment(truth, n_frames, thickness=smooth_profile, g_max=g_max, noise=True, sg_centre=0.012,
                                              n_samples=3, seed=1)
    start = truth.perturbed(0.1, seed=7)
    forward = ForwardModel(exp, start, g_max=g_max, sg_max=0.012, n_samples=3, selection=None)
    grid = np.arange(300.0, 1000.0, 40.0 if quick else 20.0)
    t_grid = grid_search_thickness(forward, start, grid)
    thickness = make_thickness_model("nn", exp.frame_angle_deg, t_grid, seed=0, fit_steps=20 if quick else 60)
    model = RefinementModel(start, exp.frame_angle_deg, thickness_model=thickness)
    prep_s = time.perf_counter() - t0
    print(f"synthetic quartz: {exp.n_frames} frames, {forward.n_reflections} reflections, "
          f"{int(forward.beam_counts().mean())} beams/frame, {forward.n_samples} samples/frame; "
          f"start RMSD {asu_rmsd(truth, start):.4f} Å; set-up {prep_s:.1f} s")
    job = RefinementJob(forward, model, n_epochs=epochs, lr=2e-3 if quick else 1e-3,
                        lrs={"positions": 2e-3, "adp": 5e-4}, threads=threads, uncertainties=True,
                        settings={"demo": True, "quick": quick})
    bar = TqdmProgress(job, desc="demo refinement")
    try:
        result = job.run()
    finally:
        bar.close()
    refined = result.crystal
    hist = result.history["wR_all"]
    rmsd, adp = asu_rmsd(truth, refined), adp_frobenius(truth, refined)
    t_err = float(np.sqrt(np.mean((result.thickness - info["thickness"]) ** 2)))
    result.settings.update({"truth_rmsd_A": rmsd, "truth_adp_frobenius": adp, "thickness_rms_error_A": t_err,
                            "setup_s": prep_s})
    paths = result.write(out)
    print(f"wR_all {hist[0]:.4f} -> {result.wr_all:.4f}, R_obs {result.r_obs:.4f} "
          f"(N_obs {result.report['N_obs']}, N_all {result.report['N_all']}); best epoch {result.best_epoch}")
    print(f"ASU RMSD to truth {rmsd:.4f} Å (start {asu_rmsd(truth, start):.4f}); ADP Frobenius {adp:.5f}; "
          f"thickness RMS error {t_err:.1f} Å; {result.elapsed_s:.1f} s refining "
          f"({np.mean(result.history['seconds']):.3f} s/epoch)")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
