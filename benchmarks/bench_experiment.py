"""Time to score one full real-quartz dataset: forward, and forward + backward (gradients with
respect to the asymmetric-unit positions/U and the per-frame thickness), in float64 and float32.

    python benchmarks/bench_experiment.py [--data-dir ../shared/data] [--samples 24] [--repeat 2] [--threads 1]

Appends a table to benchmarks/RESULTS.md (``--no-record`` to skip).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record_results  # noqa: E402

from edwidgets.crystal import Crystal  # noqa: E402
from edwidgets.experiment.forward import ForwardModel  # noqa: E402
from edwidgets.experiment.pets_experiment import experiment_from_pets  # noqa: E402
from edwidgets.experiment.residuals import apply_frame_scales, frame_scales, wr_all  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    experiment = experiment_from_pets(args.data_dir / "quartz" / "quartz.cif_pets")
    crystal = Crystal.from_cif(args.data_dir / "quartz" / "enantiomer_1.cif")
    rows = []
    for dtype in (torch.float64, torch.float32):
        start = time.perf_counter()
        forward = ForwardModel(experiment, crystal, g_max=1.6, resolution=1.6, sg_max=0.01, n_samples=args.samples,
                               selection=(0.9, 0.0015), dtype=dtype)
        setup = time.perf_counter() - start
        thickness0 = torch.full((experiment.n_frames,), 450.0, dtype=dtype)
        obs = forward.observations

        def forward_only():
            with torch.no_grad():
                i_calc = forward.intensities(thickness0)
                return wr_all(apply_frame_scales(i_calc, frame_scales(i_calc, obs), forward.frame_index), obs).value

        def forward_backward():
            params = crystal.parameters(dtype=dtype)
            thickness = thickness0.clone().requires_grad_(True)
            i_calc = forward.intensities(thickness, atoms=crystal.expand(params))
            loss = wr_all(apply_frame_scales(i_calc, frame_scales(i_calc, obs), forward.frame_index), obs).value
            loss.backward()
            grads = [p.grad for p in params.parameters() if p.grad is not None] + [thickness.grad]
            assert all(torch.isfinite(g).all() for g in grads), "non-finite gradient"
            return loss

        value = float(forward_only())
        t_forward = best_time(forward_only, args.repeat)
        t_backward = best_time(forward_backward, args.repeat)
        beams = forward.beam_counts()
        name = str(dtype).replace("torch.", "")
        line = (f"| {name} | {experiment.n_frames} | {forward.n_samples} | {beams.mean():.1f} / {beams.max()} | "
                f"{forward.n_reflections} | {100 * value:.2f} | {setup:.1f} | {t_forward:.2f} | {t_backward:.2f} |")
        print(line, flush=True)
        rows.append(line)
    table = ("| dtype | frames | samples/frame | beams/frame mean / max | reflections | wR_all % (t = 450 Å) | set-up s "
             "| forward s | forward+backward s |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print(table)
    if not args.no_record:
        record_results("Real quartz: score one dataset (forward, forward+backward)", table,
                       f"g_max = resolution 1.6 Å⁻¹, sg_max 0.01, selection (0.9, 0.0015), constant t = 450 Å, eigen "
                       f"propagation, gradients wrt ASU positions/U and per-frame thickness, best of {args.repeat}, "
                       f"{args.threads} torch thread(s)")


if __name__ == "__main__":
    main()
