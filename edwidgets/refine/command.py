"""``edwidgets refine``: preparation and refinement of a structure against a PETS2 dataset."""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import EdwidgetsError
from ..experiment.parallel import intra_op_threads
from ..experiment.preparation import DEFAULT_MAX_ANGLE_DEG, DEFAULT_ORIENTATION_EVALUATIONS, rotation_angle_deg

#: Defaults of ``edwidgets refine`` (justified in benchmarks/RESULTS.md, real-quartz refinement):
#: the paper's quartz resolution, Klar et al.'s selection as used by the authors' code, samples per
#: frame from the rocking-curve rule for a 600 Å crystal.
DEFAULT_G_MAX = 1.6
DEFAULT_SELECTION = (0.9, 0.0015)
DEFAULT_THICKNESS_HINT = 600.0
MAX_AUTO_SAMPLES = 48
BOUNDED_THICKNESS_MODELS = ("nn", "nn-quadratic")
DEFAULT_THICKNESS_MODEL = "per-frame"
#: The σ-weighted wR2 (w = 1/σ²(I)): the efficient least-squares weights for counting noise (its
#: goodness of fit is 1 on synthetic data, so the s.u. are honest), and on real quartz the lowest
#: R_obs of the three losses (benchmarks/RESULTS.md, session 6). The paper's eq. 2/3 losses stay
#: available: "frame-mean" (averaged over rotations, as the authors' code) and "wr-all".
DEFAULT_LOSS = "wr2"
PER_FRAME_THICKNESS_LR = 1e-2
#: Joint orientation refinement (radians per Adam step, ≈ 0.006°): the paper's 1e-3 (0.06° per step)
#: is far larger than the corrections themselves.
JOINT_ORIENTATION_LR = 1e-4


def _load_experiment(path: Path):
    if not path.exists():
        raise EdwidgetsError(f"{path}: no such data file")
    try:
        from ..experiment.pets_experiment import experiment_from_pets
    except ImportError:  # pragma: no cover - older trees
        raise EdwidgetsError("this installation cannot read PETS2 data (edwidgets.experiment.pets_experiment missing)")
    return experiment_from_pets(path)


def run_refine(args) -> int:
    """Read structure and data, prepare (thickness search, orientations), refine, write results."""
    result = refine_from_args(args)
    return 0 if result.state in ("finished", "stopped") else 1


def refine_from_args(args):
    """The work of ``edwidgets refine``; returns the :class:`RefinementResult` (also written to ``args.out``).

    The preparation (per-frame thickness and orientation corrections) is in
    ``result.settings["preparation"]``; ``result.history`` holds the R values of every epoch.
    """
    from tqdm.auto import tqdm

    from ..cli import load_crystal
    from ..experiment.forward import ForwardModel
    from .job import RefinementJob
    from .model import RefinementModel, make_thickness_model
    from .progress import TqdmProgress

    threads = int(getattr(args, "threads", None) or 0) or None
    workers = getattr(args, "workers", None) or "auto"
    out = Path(args.out)
    device = resolve_device(getattr(args, "device", None))
    crystal = load_crystal(args.structure)
    experiment = _load_experiment(Path(args.data))
    dtype = torch.float32 if getattr(args, "dtype", "float64") == "float32" else torch.float64
    samples = getattr(args, "samples", None) or auto_samples(experiment, args.thickness_hint, args.g_max)
    selection = tuple(getattr(args, "selection", None) or DEFAULT_SELECTION)
    absorption = float(getattr(args, "absorption", 0.0) or 0.0)
    if not (math.isfinite(absorption) and absorption >= 0):
        raise EdwidgetsError(f"--absorption must be a number ≥ 0, got {absorption}")
    window_deg = float(getattr(args, "thickness_window_deg", 0.0) or 0.0)
    if not (math.isfinite(window_deg) and window_deg >= 0):
        raise EdwidgetsError(f"--thickness-window-deg must be a number ≥ 0, got {window_deg}")
    forward_kw = dict(g_max=args.g_max, sg_max=args.sg_max, n_samples=samples, selection=selection, dtype=dtype,
                      workers=workers, absorption=absorption, device=device)
    t0 = time.perf_counter()
    # the preparation (simplex searches per frame, one eigendecomposition for a whole thickness grid)
    # runs on the CPU; on a GPU, where batched eigh is slow, only the refinement runs there
    forward = ForwardModel(experiment, crystal, progress=tqdm, **{**forward_kw, "device": None})
    threads = threads or intra_op_threads(forward.workers)
    torch.set_num_threads(threads)
    kinematic = bool(getattr(args, "kinematic", False))
    t_init: float | np.ndarray = float(args.thickness)
    prepared = None
    if not args.no_prepare and not kinematic:
        try:
            from ..experiment.preparation import prepare
        except ImportError:
            prepare = None
            print("edwidgets: preparation is not available; refining from the file's orientations")
        if prepare is not None:
            prep_t0 = time.perf_counter()
            prepared = prepare(forward, refine_orientation=not args.no_orientation, progress=tqdm,
                               cache_dir=out / ".cache", max_angle_deg=args.max_orientation_deg or None,
                               max_evaluations=args.orientation_evaluations,
                               thickness_window_deg=window_deg)
            prep_s = time.perf_counter() - prep_t0
            experiment = experiment.with_orientations(np.asarray(experiment.orientations) @ prepared.rotations)
            t_init = np.asarray(prepared.thickness, dtype=float)
            # a frame's grid minimum can sit below the NN's range (a few frames fit best at ~10 Å);
            # start a bounded thickness model inside its bounds instead of refusing
            lo, hi = 1.01 * args.thickness_min, 0.99 * args.thickness_max
            outside = (t_init < lo) | (t_init > hi)
            if outside.any() and args.thickness_model in BOUNDED_THICKNESS_MODELS:
                print(f"edwidgets: {int(outside.sum())} frame(s) with grid-search thickness outside "
                      f"{args.thickness_min:.0f}–{args.thickness_max:.0f} Å start at the bound")
                t_init = np.clip(t_init, lo, hi)
    if prepared is not None or device.type != "cpu":
        # beam sets follow the corrected orientations; the scored reflections stay those selected
        # at the file's orientations, so N_obs/N_all do not depend on the model (e.g. the hand)
        forward = ForwardModel(experiment, crystal, rows=forward.rows_in_data, **forward_kw)
    kind = "kinematic" if kinematic else args.thickness_model
    thickness = make_thickness_model(kind, experiment.frame_angle_deg, t_init,
                                     thickness_range=(args.thickness_min, args.thickness_max), dtype=dtype)
    refine = {"thickness": not kinematic, "orientation": bool(args.refine_orientation) and not kinematic}
    model = RefinementModel(crystal, experiment.frame_angle_deg, anisotropic=True if args.anisotropic else None,
                            thickness_model=thickness, refine=refine, dtype=dtype).to(device)
    lrs = parse_group_rates(getattr(args, "lr_group", None) or [])
    if refine["orientation"] and "orientation" not in lrs:
        lrs["orientation"] = JOINT_ORIENTATION_LR
    if kind == "per-frame" and "thickness" not in lrs:
        # per-frame thickness is refined as log t: Adam moves it by up to ~1 % per step at 1e-2; the
        # paper's 1e-3 (≤ 0.1 % per step) barely leaves the 2 Å grid search's value in 200 epochs
        lrs["thickness"] = PER_FRAME_THICKNESS_LR
    setup_s = time.perf_counter() - t0
    n_val = int(args.validation_frames or 0)
    validation = None
    if n_val:
        rng = np.random.default_rng(0)
        validation = np.sort(rng.choice(experiment.n_frames, size=n_val, replace=False))
    settings = {"structure": str(args.structure), "data": str(args.data), "kinematic": kinematic,
                "prepared": prepared is not None, "setup_s": setup_s, "workers": forward.workers, "g_max": args.g_max, "sg_max": args.sg_max,
                "selection_RSg_DSg": list(selection), "absorption": absorption, "samples_per_frame": forward.n_samples,
                "beams_per_frame_mean": float(forward.beam_counts().mean()), "thickness_model": kind,
                "dtype": str(dtype).replace("torch.", ""), "device": str(device), "method": forward.method, "lr": args.lr, "lr_groups": lrs,
                "refined_groups": model.refined_groups(),
                "max_orientation_deg": args.max_orientation_deg if prepared is not None and not args.no_orientation else None,
                "thickness_window_deg": window_deg if prepared is not None else None}
    if prepared is not None:
        settings["preparation"] = {"global_thickness_A": float(prepared.global_thickness),
                                   "thickness_per_frame_A": [float(v) for v in prepared.thickness],
                                   "frame_wr_before": [float(v) for v in prepared.wr_before],
                                   "frame_wr_after": [float(v) for v in prepared.wr_after],
                                   "orientation_correction_deg": [rotation_angle_deg(r) for r in prepared.rotations],
                                   "seconds": prep_s}
    job = RefinementJob(forward, model, n_epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, lrs=lrs,
                        validation_frames=validation, patience=args.patience if n_val else None,
                        threads=threads, uncertainties=not args.no_su, settings=settings,
                        loss=getattr(args, "loss", DEFAULT_LOSS).replace("-", "_"))
    print(f"{forward.n_reflections} reflections ({forward.observations.n_obs} observed), {experiment.n_frames} frames, "
          f"{forward.beam_counts().mean():.0f} beams and {forward.n_samples} samples per frame; "
          f"{model.n_refined(('positions', 'adp'))} structural parameters; set-up {setup_s:.1f} s")
    if refine["orientation"] and args.max_orientation_deg:
        bound_orientations(job, model, prepared.rotations if prepared is not None else None, args.max_orientation_deg)
    bar = TqdmProgress(job, desc="refining")
    try:
        result = job.run()
    finally:
        bar.close()
    if args.checkpoint:
        job.save_checkpoint(args.checkpoint)
    if refine["orientation"] and job.best is not None:
        # the joint corrections of the best epoch, on top of the preparation's (degrees)
        from ..experiment.forward import small_rotation

        angles = job.best["state"]["orientation"].detach().cpu().double()
        result.settings["orientation_joint_deg"] = {
            "max_angle": float(np.degrees(angles.abs().max())),
            "per_frame_rotation": [rotation_angle_deg(r) for r in small_rotation(angles).numpy()],
        }
    paths = result.write(out)
    rep = result.report
    print(f"R_obs = {100 * rep['R_obs']:.2f} % (N_obs {rep['N_obs']}), wR_all = {100 * rep['wR_all']:.2f} % "
          f"(N_all {rep['N_all']}); best epoch {result.best_epoch} of {result.epochs}; {result.state}")
    print(f"means over frames, as the paper's code reports them: R_obs = {100 * rep['R_obs_frame_mean']:.2f} %, "
          f"wR = {100 * rep['wR_all_frame_mean']:.2f} %")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return result


def bound_orientations(job, model, prepared_rotations, max_angle_deg: float) -> None:
    """Keep every joint orientation angle within ±``max_angle_deg`` of the file's orientation,
    counting the preparation's correction: after each optimizer step the angles are clamped to
    [−b − a_prep, b − a_prep] (small rotations compose additively to first order)."""
    from scipy.spatial.transform import Rotation

    bound = math.radians(max_angle_deg)
    n = model.n_frames
    prep = np.zeros((n, 3))
    if prepared_rotations is not None:
        # R = R_z(ω) R_y(β) R_x(α): scipy's intrinsic "ZYX" Euler angles are (ω, β, α)
        prep = Rotation.from_matrix(np.asarray(prepared_rotations)).as_euler("ZYX")[:, ::-1]
    kw = dict(dtype=model.orientation.dtype, device=model.orientation.device)
    lo = torch.as_tensor(-bound - prep, **kw).clamp(max=0.0)
    hi = torch.as_tensor(bound - prep, **kw).clamp(min=0.0)

    def clamp(*_):
        with torch.no_grad():
            model.orientation.copy_(torch.minimum(torch.maximum(model.orientation, lo), hi))

    job.optimizer.register_step_post_hook(clamp)


def resolve_device(name: str | None) -> torch.device:
    """The torch device of ``--device`` (default CPU); a clear error when it is not there."""
    try:
        device = torch.device(name or "cpu")
    except (RuntimeError, ValueError):
        raise EdwidgetsError(f"--device {name!r}: not a torch device (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EdwidgetsError(f"--device {name}: this torch sees no CUDA GPU ({torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise EdwidgetsError(f"--device {name}: only cpu and cuda are supported")
    return device


def auto_samples(experiment, thickness_hint: float, g_max: float, cap: int = MAX_AUTO_SAMPLES) -> int:
    """Orientation samples per frame: the rocking-curve rule of physics-notes §7 for a crystal of
    ``thickness_hint`` Å (``experiment.auto_samples``), at most ``cap`` (cost grows linearly)."""
    return int(min(experiment.auto_samples(thickness_hint, g_max), cap))


def parse_group_rates(items) -> dict[str, float]:
    """``["thickness=3e-3", ...]`` → {"thickness": 0.003}; clear errors for bad items."""
    from .model import PARAMETER_GROUPS

    rates = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or name not in PARAMETER_GROUPS:
            raise EdwidgetsError(f"--lr-group {item!r}: expected GROUP=RATE with GROUP one of {', '.join(PARAMETER_GROUPS)}")
        try:
            rate = float(value)
        except ValueError:
            raise EdwidgetsError(f"--lr-group {item!r}: {value!r} is not a number") from None
        if not rate > 0:
            raise EdwidgetsError(f"--lr-group {item!r}: the rate must be > 0")
        rates[name] = rate
    return rates


def add_refine_arguments(parser) -> None:
    """Options of ``edwidgets refine`` (defaults follow the paper: Adam, lr 1e-3, 200 epochs, ThicknessNN)."""
    from .model import THICKNESS_MODELS

    parser.add_argument("--epochs", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "lbfgs"), default="adam")
    parser.add_argument("--thickness-model", choices=[m for m in THICKNESS_MODELS if m != "kinematic"],
                        default=DEFAULT_THICKNESS_MODEL,
                        help="thickness model (default per-frame: one thickness per frame, started at the grid search's "
                             "optimum; 'nn' is the paper's ThicknessNN)")
    parser.add_argument("--loss", choices=("wr2", "frame-mean", "wr-all"), default=DEFAULT_LOSS,
                        help="refinement loss: wr2 (default), the conventional wR2 on intensities with "
                             "w = 1/σ²(I) (SHELXL's weights with a = b = 0); or the paper's eq. 2/3 weights, either "
                             "averaged over frames as the paper and the authors' code do (frame-mean) or as wR_all "
                             "over every reflection (wr-all)")
    parser.add_argument("--kinematic", action="store_true", help="kinematical baseline: thickness fixed at 10 Å")
    parser.add_argument("--thickness", type=float, default=1000.0, help="start thickness without preparation (Å)")
    parser.add_argument("--thickness-min", type=float, default=50.0, help="ThicknessNN lower bound (Å)")
    parser.add_argument("--thickness-max", type=float, default=3000.0, help="ThicknessNN upper bound (Å)")
    parser.add_argument("--g-max", type=float, default=DEFAULT_G_MAX,
                        help=f"beams and scored reflections up to this |g| (Å⁻¹, default {DEFAULT_G_MAX}, the paper's quartz value)")
    parser.add_argument("--sg-max", type=float, default=0.01, help="excitation-error limit of beams (Å⁻¹)")
    parser.add_argument("--selection", type=float, nargs=2, metavar=("RSG", "DSG"), default=DEFAULT_SELECTION,
                        help="reflection selection of Klar et al.: R_Sg^max and D_Sg (Å⁻¹) (default 0.9 0.0015)")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"orientation samples per frame (default: rocking-curve rule for --thickness-hint, ≤ {MAX_AUTO_SAMPLES})")
    parser.add_argument("--thickness-hint", type=float, default=DEFAULT_THICKNESS_HINT,
                        help=f"typical thickness (Å) for the automatic number of samples (default {DEFAULT_THICKNESS_HINT:.0f})")
    parser.add_argument("--max-orientation-deg", type=float, default=DEFAULT_MAX_ANGLE_DEG,
                        help="bound of each per-frame orientation-correction angle in preparation (degrees; 0: unbounded)")
    parser.add_argument("--thickness-window-deg", type=float, default=0.0,
                        help="pool the preparation's per-frame thickness search over frames within ± this angle "
                             "(degrees; default 0: each frame alone). Helps sparse or noisy frames.")
    parser.add_argument("--orientation-evaluations", type=int, default=DEFAULT_ORIENTATION_EVALUATIONS,
                        help="Nelder–Mead evaluations per frame in preparation")
    parser.add_argument("--lr-group", action="append", metavar="GROUP=RATE",
                        help="learning rate of one group (positions, adp, thickness, orientation); repeatable")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="floating-point precision")
    parser.add_argument("--absorption", type=float, default=0.0,
                        help="κ of the proportional absorption model U' = κU (default 0; > 0 uses the general "
                             "eigendecomposition, about 3× the cost per epoch)")
    parser.add_argument("--no-prepare", action="store_true", help="skip the thickness search and orientation refinement")
    parser.add_argument("--no-orientation", action="store_true", help="preparation without orientation refinement")
    parser.add_argument("--refine-orientation", action=argparse.BooleanOptionalAction, default=True,
                        help="refine per-frame orientation corrections jointly with the structure (default on; "
                             "kept within --max-orientation-deg of the file's orientation, together with the preparation's)")
    parser.add_argument("--anisotropic", action="store_true", help="refine anisotropic U (isotropic sites start isotropic)")
    parser.add_argument("--validation-frames", type=int, default=0, help="hold out N random frames for early stopping")
    parser.add_argument("--patience", type=int, default=20, help="early-stopping patience (epochs)")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu (default) or cuda; on a GPU the propagation uses the matrix exponential")
    parser.add_argument("--workers", type=int, default=None,
                        help="frames computed in parallel threads (default: the available CPU cores; 1 on a GPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads per worker (default: cores ÷ workers, i.e. 1)")
    parser.add_argument("--no-su", action="store_true", help="skip standard uncertainties")
    parser.add_argument("--checkpoint", default=None, help="write a resumable checkpoint here at the end")
