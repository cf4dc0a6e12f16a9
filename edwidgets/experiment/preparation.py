"""Preparation before a refinement (paper, Methods 4.3; physics-notes §7): per-frame orientation
refinement and thickness grid searches, shown with progress and cached on disk.

One eigendecomposition per orientation sample serves every thickness of a grid, so a full
5–2000 Å search costs little more than one forward pass.
"""
from __future__ import annotations

import hashlib
import json
import math
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from ..errors import ExperimentError
from ..io_utils import atomic_write_bytes
from ..physics.beams import rotation_matrix
from .forward import ForwardModel, small_rotation
from .parallel import imap_frames, map_frames

DEFAULT_GRID = (5.0, 2000.0, 2.0)  # paper: 5–2000 Å in 2 Å steps


def thickness_grid(lo: float = DEFAULT_GRID[0], hi: float = DEFAULT_GRID[1], step: float = DEFAULT_GRID[2]) -> np.ndarray:
    return np.arange(lo, hi + 1e-9, step)


def _frame_wr_terms(forward: ForwardModel, plan, i_calc: torch.Tensor):
    """Numerator and denominator of a frame's wR² for I_calc [T, n] with the closed-form scale."""
    obs = forward.observations
    w = obs.weight[plan.rows]
    io = obs.i_obs[plan.rows]
    w2 = w**2
    num_k = (w2 * io * i_calc).sum(-1)
    den_k = (w2 * i_calc**2).sum(-1)
    k = torch.where(den_k > 0, num_k / torch.where(den_k > 0, den_k, torch.ones_like(den_k)), torch.ones_like(den_k))
    residual = (w2 * (io - k[:, None] * i_calc) ** 2).sum(-1)
    return residual, (w2 * io**2).sum()


def frame_wr(forward: ForwardModel, frame: int, thickness: float, rotation: torch.Tensor | None = None) -> float:
    """wR_all of one frame with its closed-form scale."""
    plan = forward.plans[frame]
    if len(plan.rows) == 0:
        return 0.0
    with torch.no_grad():
        i_calc = forward.frame_intensities(plan, _couplings(forward), torch.tensor([thickness], dtype=forward.dtype), rotation)
        num, den = _frame_wr_terms(forward, plan, i_calc)
    return float(torch.sqrt(num[0] / den)) if den > 0 else 0.0


# Keyed weakly by the model object itself: an id() key could be reused by a later model (e.g. the
# other enantiomer) after the first is garbage-collected, and would then return stale couplings.
_COUPLING_CACHE: "weakref.WeakKeyDictionary[ForwardModel, torch.Tensor]" = weakref.WeakKeyDictionary()


def _couplings(forward: ForwardModel) -> torch.Tensor:
    if forward not in _COUPLING_CACHE:
        with torch.no_grad():
            _COUPLING_CACHE[forward] = forward.couplings()
    return _COUPLING_CACHE[forward]


@dataclass
class ThicknessSearch:
    grid: np.ndarray
    per_frame: np.ndarray  # best thickness of each frame (Å)
    per_frame_wr: np.ndarray  # its frame wR
    global_thickness: float  # best single thickness for the whole dataset
    global_wr: float
    curve: np.ndarray  # wR_all of the whole dataset vs grid thickness


#: Coarse spacing (Å) of the two-level thickness search: wR(t) of a frame varies on the scale of
#: extinction distances (≳ 100 Å), so a 10 Å pass finds the basin and a fine pass around it the minimum.
COARSE_SPACING_A = 10.0


def _pooled(windows: np.ndarray, nums: torch.Tensor) -> torch.Tensor:
    """Σ over each window's member frames of their wR numerators [frames, grid]; +inf where a member
    skipped that grid point (a plain matmul would turn 0·inf into NaN)."""
    member = torch.as_tensor(windows, dtype=nums.dtype)
    skipped = torch.isinf(nums)
    total = member @ torch.where(skipped, torch.zeros_like(nums), nums)
    return torch.where((member @ skipped.to(nums.dtype)) > 0, torch.full_like(total, math.inf), total)


def thickness_search(forward: ForwardModel, grid=None, rotations: torch.Tensor | None = None, progress=None,
                     coarse_stride: int | None = None, couplings: torch.Tensor | None = None,
                     window_deg: float = 0.0) -> ThicknessSearch:
    """Grid search of the thickness, per frame and for the whole dataset (closed-form scales).

    ``couplings`` (``forward.couplings(atoms)``) scores another structure than the forward model's.

    ``window_deg`` > 0 pools neighbouring frames: each frame gets the thickness that minimises
    wR_all over the reflections of all frames within ±``window_deg`` of its angle (each frame
    keeps its own scale). A frame with a handful of reflections has many near-equal minima on
    different Pendellösung branches; pooling picks the branch its neighbours agree on, assuming
    the thickness changes little across the window. Frames without reflections then borrow their
    neighbours' value. ``per_frame_wr`` stays each frame's own wR at the chosen thickness.

    Two levels: every ``coarse_stride``-th grid point first (default: about 10 Å apart), then every
    grid point within one coarse step of each frame's best and of the dataset's best. One
    eigendecomposition per orientation sample serves both levels. ``coarse_stride=1`` evaluates
    the whole grid. ``curve`` is +inf at grid points that were not evaluated.
    """
    if not (math.isfinite(window_deg) and window_deg >= 0):
        raise ExperimentError(f"thickness window must be a number of degrees ≥ 0, got {window_deg}")
    grid = thickness_grid() if grid is None else np.asarray(grid, float)
    n_grid = len(grid)
    if coarse_stride is None:
        step = float(np.median(np.diff(grid))) if n_grid > 1 else COARSE_SPACING_A
        coarse_stride = max(1, int(round(COARSE_SPACING_A / step))) if n_grid > 100 else 1
    coarse_stride = int(coarse_stride)
    t = torch.as_tensor(grid, dtype=forward.dtype)
    couplings = _couplings(forward) if couplings is None else couplings.detach()
    n_frames = forward.experiment.n_frames
    nums = torch.full((n_frames, n_grid), math.inf, dtype=forward.dtype)
    dens = torch.zeros(n_frames, dtype=forward.dtype)
    coarse = np.unique(np.r_[np.arange(0, n_grid, coarse_stride), n_grid - 1])

    def evaluate(plan, eigen, index):
        index = np.unique(index)
        index = index[torch.isinf(nums[plan.frame, torch.as_tensor(index)]).numpy()]  # +inf: not yet evaluated
        if index.size == 0:
            return
        # in chunks: bounded memory ([S, chunk, N] phases) whatever the grid length
        parts = [forward.intensities_from_eigen(plan, eigen, t[index[i:i + 256]]) for i in range(0, index.size, 256)]
        num, den = _frame_wr_terms(forward, plan, torch.cat(parts))
        # the bookkeeping stays on the CPU whatever the forward model's device
        dens[plan.frame] = den.cpu()
        nums[plan.frame, torch.as_tensor(index)] = num.cpu()

    def first_pass(plan):
        with torch.no_grad():  # grad mode is per thread
            rot = None if rotations is None else rotations[plan.frame]
            eigen = forward.frame_eigen(plan, couplings, rot)
            evaluate(plan, eigen, coarse)  # each frame writes only its own row of nums
        return eigen

    def fine_pass(item):
        plan, eigen = item
        with torch.no_grad():
            b = int(torch.argmin(nums[plan.frame]))
            near = np.r_[np.arange(b - coarse_stride, b + coarse_stride + 1),
                         np.arange(g_coarse - coarse_stride, g_coarse + coarse_stride + 1)]
            if windows is not None:  # also around the pooled optimum of every window holding this frame
                for w in np.unique(pooled_coarse[windows[:, plan.frame]]):
                    near = np.r_[near, np.arange(w - coarse_stride, w + coarse_stride + 1)]
            evaluate(plan, eigen, near[(near >= 0) & (near < n_grid)])

    plans = [p for p in forward.plans if len(p.rows)]
    eigens = imap_frames(first_pass, plans, forward.workers)
    if progress is not None:
        eigens = progress(eigens, total=len(plans), desc="thickness search", leave=False)
    eigens = list(eigens)
    empty = dens == 0  # frames without reflections: numerator 0, so they add nothing to a window
    nums[empty] = 0.0
    windows = None
    if window_deg > 0:
        angles = np.asarray(forward.experiment.frame_angle_deg, float)
        windows = np.abs(angles[:, None] - angles[None, :]) <= float(window_deg) + 1e-9  # [frame, member]
    if coarse_stride > 1:
        total = nums[[p.frame for p in plans]][:, coarse].sum(0)
        g_coarse = int(coarse[int(torch.argmin(total))])
        if windows is not None:
            pooled_coarse = coarse[torch.argmin(_pooled(windows, nums[:, coarse]), dim=1).numpy()]
        map_frames(fine_pass, zip(plans, eigens), forward.workers)
    del eigens
    frame_wr = torch.sqrt(nums / torch.where(empty, torch.ones_like(dens), dens)[:, None])
    if windows is None:
        best = torch.argmin(frame_wr, dim=1)
    else:
        best = torch.argmin(_pooled(windows, nums), dim=1)
    curve = torch.sqrt(nums.sum(0) / dens.sum())
    g = int(torch.argmin(curve))
    return ThicknessSearch(grid=grid, per_frame=grid[best.numpy()], per_frame_wr=frame_wr[torch.arange(len(best)), best].numpy(),
                           global_thickness=float(grid[g]), global_wr=float(curve[g]), curve=curve.numpy())


#: Largest orientation correction per angle (degrees). One frame's ~20 reflections cannot pin its
#: orientation much better than the frame width, and an unbounded simplex wandered 3.6° on one
#: quartz frame (overfitting its intensities); PETS2 orientations are good to a few tenths of a degree.
DEFAULT_MAX_ANGLE_DEG = 0.5
#: Nelder–Mead evaluations per frame (the budget of the real-quartz results in benchmarks/RESULTS.md).
DEFAULT_ORIENTATION_EVALUATIONS = 120


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle (degrees) of a proper rotation matrix."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))


def refine_frame_orientation(forward: ForwardModel, frame: int, thickness: float, *, method: str = "nelder-mead",
                             start_step_deg: float = 0.1, max_evaluations: int = DEFAULT_ORIENTATION_EVALUATIONS,
                             max_angle_deg: float | None = DEFAULT_MAX_ANGLE_DEG) -> tuple[np.ndarray, float, float]:
    """Best small rotation (3x3, crystal frame) of one frame; returns (rotation, wR before, wR after).

    "nelder-mead": three small angles R_z(ω)R_y(β)R_x(α) by scipy's simplex from a regular simplex,
    each kept within ±``max_angle_deg`` (scipy's bounded Nelder–Mead; None: unbounded).
    "hexagonal": the two-parameter scan of Palatinus et al. 2013: tilts R_z(φ)R_x(θ)R_z(−φ) of the
    beam for φ in 60° steps, θ halved whenever no direction improves; trial orientations more than
    ``max_angle_deg`` from the start are rejected.
    """
    if max_angle_deg is not None and not max_angle_deg > 0:
        raise ValueError(f"max_angle_deg must be > 0 or None, got {max_angle_deg}")
    dtype = forward.dtype
    before = frame_wr(forward, frame, thickness)
    if len(forward.plans[frame].rows) == 0:
        return np.eye(3), before, before
    if method == "nelder-mead":
        def objective(angles_deg):
            rot = small_rotation(torch.as_tensor(np.radians(angles_deg), dtype=dtype))
            return frame_wr(forward, frame, thickness, rot)

        step = start_step_deg if max_angle_deg is None else min(start_step_deg, max_angle_deg)
        simplex = np.array([[0, 0, 0], [step, 0, 0], [0, step, 0], [0, 0, step]], float)
        simplex -= simplex.mean(0)  # centred on the start
        bounds = None if max_angle_deg is None else [(-max_angle_deg, max_angle_deg)] * 3
        res = minimize(objective, np.zeros(3), method="Nelder-Mead", bounds=bounds,
                       options=dict(initial_simplex=simplex, maxfev=max_evaluations, xatol=1e-4, fatol=1e-6))
        best_angles, after = res.x, float(res.fun)
        if after >= before:
            return np.eye(3), before, before
        return small_rotation(torch.as_tensor(np.radians(best_angles), dtype=dtype)).numpy(), before, after
    if method == "hexagonal":
        centre = forward.plans[frame].sample_orientations.numpy()
        centre = centre[len(centre) // 2]
        centre_inv = np.linalg.inv(centre)
        lab_total = np.eye(3)
        best = before
        theta = math.radians(start_step_deg)
        evaluations = 0
        while theta > math.radians(0.002) and evaluations < max_evaluations:
            improved = False
            for phi in np.radians(np.arange(0, 360, 60)):
                rz = rotation_matrix((0, 0, 1), phi)
                trial_lab = rz @ rotation_matrix((1, 0, 0), theta) @ rz.T @ lab_total
                crystal_rot = centre_inv @ trial_lab @ centre
                if max_angle_deg is not None and rotation_angle_deg(trial_lab) > max_angle_deg:
                    continue
                value = frame_wr(forward, frame, thickness, torch.as_tensor(crystal_rot, dtype=dtype))
                evaluations += 1
                if value < best - 1e-9:
                    best, best_lab, improved = value, trial_lab, True
            if improved:
                lab_total = best_lab
            else:
                theta /= 2
        return centre_inv @ lab_total @ centre, before, best
    raise ValueError(f"unknown orientation refinement method {method!r}; use 'nelder-mead' or 'hexagonal'")


@dataclass
class PreparationResult:
    """Per-frame orientation corrections (crystal-frame rotations) and thickness estimates."""

    rotations: np.ndarray  # [F, 3, 3]
    thickness: np.ndarray  # per-frame best thickness after orientation refinement (Å)
    global_thickness: float
    wr_before: np.ndarray  # per-frame wR before / after orientation refinement
    wr_after: np.ndarray
    settings: dict

    def rotation_tensor(self, dtype=torch.float64) -> torch.Tensor:
        return torch.as_tensor(self.rotations, dtype=dtype)

    def save(self, path) -> Path:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, rotations=self.rotations, thickness=self.thickness, global_thickness=self.global_thickness,
                 wr_before=self.wr_before, wr_after=self.wr_after, settings=json.dumps(self.settings))
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> "PreparationResult":
        with np.load(path) as data:
            return cls(rotations=data["rotations"], thickness=data["thickness"], global_thickness=float(data["global_thickness"]),
                       wr_before=data["wr_before"], wr_after=data["wr_after"], settings=json.loads(str(data["settings"])))


def preparation_key(forward: ForwardModel, settings: dict) -> str:
    """Hash of everything the preparation depends on: data, structure, model settings."""
    exp = forward.experiment
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(exp.orientations).tobytes())
    digest.update(np.ascontiguousarray(exp.half_width_deg, dtype=float).tobytes())
    digest.update(np.ascontiguousarray(forward.rows_in_data, dtype=np.int64).tobytes())  # the scored reflections
    digest.update(exp.reflections[["h", "k", "l", "I", "sigma", "frame"]].to_numpy(float).tobytes())
    digest.update(forward.crystal.to_cif_string().encode())
    digest.update(json.dumps([forward.g_max, forward.sg_max, forward.resolution, forward.n_samples, forward.selection,
                              forward.absorption, exp.voltage_kv, str(forward.dtype), settings], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def prepare(forward: ForwardModel, *, refine_orientation: bool = True, method: str = "nelder-mead", grid=None,
            cache_dir=None, progress=None, frames=None, max_angle_deg: float | None = DEFAULT_MAX_ANGLE_DEG,
            max_evaluations: int = DEFAULT_ORIENTATION_EVALUATIONS, thickness_window_deg: float = 0.0) -> PreparationResult:
    """Thickness search, per-frame orientation refinement, then a second thickness search.

    With ``cache_dir`` the result is stored under a hash of data, structure and settings and
    reused by later runs. ``progress`` is a tqdm-like callable; ``frames`` limits the
    orientation refinement to some frames (the others keep their file orientation);
    ``max_angle_deg`` bounds each frame's correction (see :func:`refine_frame_orientation`) and
    ``max_evaluations`` its simplex budget; ``thickness_window_deg`` pools neighbouring frames in
    both thickness searches (see :func:`thickness_search`).
    """
    grid = thickness_grid() if grid is None else np.asarray(grid, float)
    settings = dict(refine_orientation=refine_orientation, method=method, grid=[float(grid[0]), float(grid[-1]), len(grid)],
                    frames=None if frames is None else list(map(int, frames)), max_angle_deg=max_angle_deg,
                    max_evaluations=int(max_evaluations))
    if thickness_window_deg > 0:  # only when used, so that earlier caches stay valid
        settings["thickness_window_deg"] = float(thickness_window_deg)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"prep-{preparation_key(forward, settings)}.npz"
        if cache_path.exists():
            return PreparationResult.load(cache_path)
    first = thickness_search(forward, grid, progress=progress, window_deg=thickness_window_deg)
    n = forward.experiment.n_frames
    rotations = np.tile(np.eye(3), (n, 1, 1))
    before = first.per_frame_wr.copy()
    after = first.per_frame_wr.copy()
    if refine_orientation:
        todo = list(range(n) if frames is None else frames)
        _couplings(forward)  # computed once here, not raced for by the workers

        def refine_one(f):
            with torch.no_grad():
                return refine_frame_orientation(forward, f, float(first.per_frame[f]), method=method,
                                                max_angle_deg=max_angle_deg, max_evaluations=max_evaluations)

        results = imap_frames(refine_one, todo, forward.workers)  # frames are independent: one per core
        if progress is not None:
            results = progress(results, total=len(todo), desc="orientation refinement", leave=False)
        for f, (rotation, wr_before, wr_after) in zip(todo, results):
            rotations[f], before[f], after[f] = rotation, wr_before, wr_after
        second = thickness_search(forward, grid, torch.as_tensor(rotations, dtype=forward.dtype), progress=progress,
                                  window_deg=thickness_window_deg)
    else:
        second = first
    result = PreparationResult(rotations=rotations, thickness=second.per_frame, global_thickness=second.global_thickness,
                               wr_before=before, wr_after=after, settings=settings | {"global_wr": second.global_wr})
    if cache_path is not None:
        result.save(cache_path)
    return result
