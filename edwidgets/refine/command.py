"""``edwidgets refine``: preparation and refinement of a structure against a PETS2 dataset."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..errors import EdwidgetsError


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
    from tqdm.auto import tqdm

    from ..cli import load_crystal
    from ..experiment.forward import ForwardModel
    from .job import RefinementJob
    from .model import RefinementModel, make_thickness_model
    from .progress import TqdmProgress

    threads = int(getattr(args, "threads", None) or 0) or None
    if threads:
        torch.set_num_threads(threads)
    out = Path(args.out)
    crystal = load_crystal(args.structure)
    experiment = _load_experiment(Path(args.data))
    samples = getattr(args, "samples", None) or "auto"
    forward_kw = dict(g_max=args.g_max, sg_max=args.sg_max, n_samples=samples, thickness_hint=args.thickness_max)
    t0 = time.perf_counter()
    forward = ForwardModel(experiment, crystal, progress=tqdm, **forward_kw)
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
            prepared = prepare(forward, refine_orientation=not args.no_orientation, progress=tqdm,
                               cache_dir=out / ".cache")
            experiment = experiment.with_orientations(np.asarray(experiment.orientations) @ prepared.rotations)
            forward = ForwardModel(experiment, crystal, **forward_kw)
            t_init = np.asarray(prepared.thickness, dtype=float)
    kind = "kinematic" if kinematic else args.thickness_model
    thickness = make_thickness_model(kind, experiment.frame_angle_deg, t_init,
                                     thickness_range=(args.thickness_min, args.thickness_max))
    refine = {"thickness": not kinematic, "orientation": bool(args.refine_orientation)}
    model = RefinementModel(crystal, experiment.frame_angle_deg, anisotropic=True if args.anisotropic else None,
                            thickness_model=thickness, refine=refine)
    setup_s = time.perf_counter() - t0
    n_val = int(args.validation_frames or 0)
    validation = None
    if n_val:
        rng = np.random.default_rng(0)
        validation = np.sort(rng.choice(experiment.n_frames, size=n_val, replace=False))
    job = RefinementJob(forward, model, n_epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
                        validation_frames=validation, patience=args.patience if n_val else None,
                        threads=threads, uncertainties=not args.no_su,
                        settings={"structure": str(args.structure), "data": str(args.data), "kinematic": kinematic,
                                  "prepared": prepared is not None, "setup_s": setup_s})
    print(f"{forward.n_reflections} reflections ({forward.observations.n_obs} observed), {experiment.n_frames} frames, "
          f"{forward.beam_counts().mean():.0f} beams and {forward.n_samples} samples per frame; "
          f"{model.n_refined(('positions', 'adp'))} structural parameters; set-up {setup_s:.1f} s")
    bar = TqdmProgress(job, desc="refining")
    try:
        result = job.run()
    finally:
        bar.close()
    if args.checkpoint:
        job.save_checkpoint(args.checkpoint)
    paths = result.write(out)
    rep = result.report
    print(f"R_obs = {100 * rep['R_obs']:.2f} % (N_obs {rep['N_obs']}), wR_all = {100 * rep['wR_all']:.2f} % "
          f"(N_all {rep['N_all']}); best epoch {result.best_epoch} of {result.epochs}; {result.state}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0 if result.state in ("finished", "stopped") else 1


def add_refine_arguments(parser) -> None:
    """Options of ``edwidgets refine`` (defaults follow the paper: Adam, lr 1e-3, 200 epochs, ThicknessNN)."""
    from .model import THICKNESS_MODELS

    parser.add_argument("--epochs", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--optimizer", choices=("adam", "adamw", "lbfgs"), default="adam")
    parser.add_argument("--thickness-model", choices=[m for m in THICKNESS_MODELS if m != "kinematic"], default="nn")
    parser.add_argument("--kinematic", action="store_true", help="kinematical baseline: thickness fixed at 10 Å")
    parser.add_argument("--thickness", type=float, default=1000.0, help="start thickness without preparation (Å)")
    parser.add_argument("--thickness-min", type=float, default=50.0, help="ThicknessNN lower bound (Å)")
    parser.add_argument("--thickness-max", type=float, default=3000.0, help="ThicknessNN upper bound (Å)")
    parser.add_argument("--g-max", type=float, default=2.0, help="beams and reflections up to this |g| (Å⁻¹)")
    parser.add_argument("--sg-max", type=float, default=0.01, help="excitation-error limit of beams (Å⁻¹)")
    parser.add_argument("--samples", type=int, default=None, help="orientation samples per frame (default auto)")
    parser.add_argument("--no-prepare", action="store_true", help="skip the thickness search and orientation refinement")
    parser.add_argument("--no-orientation", action="store_true", help="preparation without orientation refinement")
    parser.add_argument("--refine-orientation", action="store_true", help="refine per-frame orientations jointly")
    parser.add_argument("--anisotropic", action="store_true", help="refine anisotropic U (isotropic sites start isotropic)")
    parser.add_argument("--validation-frames", type=int, default=0, help="hold out N random frames for early stopping")
    parser.add_argument("--patience", type=int, default=20, help="early-stopping patience (epochs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all available cores)")
    parser.add_argument("--no-su", action="store_true", help="skip standard uncertainties")
    parser.add_argument("--checkpoint", default=None, help="write a resumable checkpoint here at the end")
