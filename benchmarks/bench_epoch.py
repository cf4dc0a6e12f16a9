"""Per-epoch cost of a refinement (forward + backward of the wR_all objective with every group a
real refinement frees: positions, ADPs, ThicknessNN) with the eigen propagation and with a
matrix-exponential implementation of the same model (``ForwardModel(method="matrix_exp")``).

Two problems:

* real quartz with the ``edwidgets refine`` defaults (g_max 1.6 Å⁻¹, sg_max 0.01, selection
  (0.9, 0.0015), samples per frame from the rocking-curve rule), float64 and float32;
* synthetic CsPbBr₃ (Pbnm, ``make_synthetic_dataset``) at several hundred beams per frame
  (g_max 2.0 Å⁻¹, sg_max 0.01 and 0.02), a few frames and samples so matrix_exp stays affordable.

Both methods are timed alternately in one process (frames on `--workers` threads; real quartz also
with one worker, to show what the frame threads gain), so their ratio is robust to the machine's
load even where absolute times are not; the load average is recorded with every table.

    python benchmarks/bench_epoch.py [--data-dir ../shared/data] [--repeat 2] [--threads 1] [--skip-quartz-matrix-exp]
                                     [--device cuda]

Appends a table to benchmarks/RESULTS.md (``--no-record`` to skip).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record_results  # noqa: E402

from edwidgets.crystal import Crystal  # noqa: E402
from edwidgets.crystal.library import load_structure  # noqa: E402
from edwidgets.experiment.forward import ForwardModel  # noqa: E402
from edwidgets.experiment.pets_experiment import experiment_from_pets  # noqa: E402
from edwidgets.experiment.synthetic import make_synthetic_dataset  # noqa: E402
from edwidgets.refine.command import DEFAULT_SELECTION, DEFAULT_THICKNESS_HINT, auto_samples  # noqa: E402
from edwidgets.refine.model import RefinementModel, make_thickness_model  # noqa: E402
from edwidgets.refine.objective import Objective  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_average() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def epoch_timer(forward: ForwardModel, crystal, thickness: float):
    """A closure running one refinement epoch's forward + backward; returns (forward s, backward s, loss)."""
    exp = forward.experiment
    tm = make_thickness_model("nn", exp.frame_angle_deg, thickness, thickness_range=(50.0, 3000.0), dtype=forward.dtype)
    model = RefinementModel(crystal, exp.frame_angle_deg, anisotropic=True, thickness_model=tm, dtype=forward.dtype)
    objective = Objective(forward, model.to(forward.device))

    def synchronize():  # GPU kernels run asynchronously: wait for them before reading the clock
        if torch.device(forward.device or "cpu").type == "cuda":
            torch.cuda.synchronize()

    def run():
        model.zero_grad(set_to_none=True)
        synchronize()
        t0 = time.perf_counter()
        ev = objective.evaluate()
        synchronize()
        t1 = time.perf_counter()
        ev.loss.backward()
        synchronize()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, float(ev.loss.detach())

    return run


#: timed variants: ForwardModel options (frames run on ``--workers`` threads unless a variant says otherwise)
VARIANTS = {"eigen": dict(method="eigen"), "matrix_exp": dict(method="matrix_exp"),
            "eigen, 1 worker": dict(method="eigen", workers=1)}


def compare(label: str, make_forward, crystal, thickness: float, repeat: int, methods=("eigen", "matrix_exp")) -> list[str]:
    forwards = {m: make_forward(m) for m in methods}
    timers = {m: epoch_timer(forwards[m], crystal, thickness) for m in methods}
    for m in methods:  # warm-up (allocator, first-call overheads)
        timers[m]()
    best = {m: (np.inf, np.inf, np.nan) for m in methods}
    load_before = load_average()
    for _ in range(repeat):
        for m in methods:  # alternate, so both see the same load
            f, b, loss = timers[m]()
            if f + b < sum(best[m][:2]):
                best[m] = (f, b, loss)
    load_after = load_average()
    eig = forwards["eigen"]
    counts = eig.beam_counts()
    n_orient = sum(len(p.sample_orientations) for p in eig.plans)
    rows = []
    for m in methods:
        f, b, loss = best[m]
        ratio = sum(best[m][:2]) / sum(best["eigen"][:2])
        rows.append(f"| {label} | {m} | {forwards[m].workers} | {str(eig.dtype).replace('torch.', '')} | {eig.experiment.n_frames} | {eig.n_samples} "
                    f"| {counts.mean():.0f} / {counts.max()} | {eig.n_reflections} | {f:.3f} | {b:.3f} | {f + b:.3f} "
                    f"| {1e3 * (f + b) / n_orient:.2f} | {ratio:.1f} | {100 * loss:.3f} | {load_before} → {load_after} |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", default="auto", help="frame threads of ForwardModel (default: the CPU cores)")
    parser.add_argument("--skip-quartz-matrix-exp", action="store_true", help="time real quartz with eigen only")
    parser.add_argument("--skip-cspbbr3", action="store_true", help="real quartz only")
    parser.add_argument("--frames", type=int, default=4, help="frames of the synthetic CsPbBr₃ problem (1° apart)")
    parser.add_argument("--samples", type=int, default=3, help="orientation samples per frame of the synthetic CsPbBr₃ problem")
    parser.add_argument("--device", default=None, help="torch device of the forward model, e.g. cuda (default: CPU)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    quartz_data = args.data_dir / "quartz" / "quartz.cif_pets"
    if quartz_data.exists():
        experiment = experiment_from_pets(quartz_data)
        crystal = Crystal.from_cif(args.data_dir / "quartz" / "enantiomer_1.cif")
        samples = auto_samples(experiment, DEFAULT_THICKNESS_HINT, 1.6)
        for dtype in (torch.float64, torch.float32):  # matrix_exp compared in float64 only (its f32 is no cheaper)
            methods = ("eigen",) if args.skip_quartz_matrix_exp or dtype == torch.float32 else ("eigen", "matrix_exp")
            if dtype == torch.float64:
                methods += ("eigen, 1 worker",)  # what the frame threads gain, in the same run
            rows += compare("real quartz (refine defaults)",
                            lambda m, dtype=dtype: ForwardModel(experiment, crystal, g_max=1.6, sg_max=0.01, n_samples=samples,
                                                                selection=DEFAULT_SELECTION, dtype=dtype, device=args.device,
                                                                **{"workers": args.workers, **VARIANTS[m]}),
                            crystal, 550.0, args.repeat, methods)
    else:
        print(f"{quartz_data} not found: real quartz skipped")
    cspbbr3 = load_structure("cspbbr3")
    half = (args.frames - 1) / 2
    data = make_synthetic_dataset(cspbbr3, angle_range=(-half, half), step_deg=1.0, resolution=1.2, g_max=1.2,
                                  n_samples=1, thickness_mean=400.0, seed=0)
    for sg_max in () if args.skip_cspbbr3 else (0.01, 0.02):
        rows += compare(f"synthetic CsPbBr₃, sg_max {sg_max}",
                        lambda m, sg_max=sg_max: ForwardModel(data.experiment, cspbbr3, g_max=2.0, resolution=1.2, sg_max=sg_max,
                                                              n_samples=args.samples, selection=None, device=args.device,
                                                              **{"workers": args.workers, **VARIANTS[m]}),
                        cspbbr3, 400.0, args.repeat)
    table = ("| problem | method | frame workers | dtype | frames | samples/frame | beams/frame mean / max | reflections | forward s | backward s "
             "| epoch s | ms per orientation | × eigen | wR_all % | load (1/5/15 min) before → after |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print(table)
    if not args.no_record:
        record_results("Per-epoch cost: eigen vs matrix_exp (bench_epoch.py)", table,
                       f"device {args.device or 'cpu'}; "
                       f"{args.threads} torch intra-op thread(s), frames on parallel threads (workers column), best of "
                       f"{args.repeat} after one warm-up, methods alternated; "
                       "epoch = objective forward + backward wrt positions, anisotropic U and ThicknessNN (closed-form scales); "
                       "the machine is shared (see load)")


if __name__ == "__main__":
    main()
