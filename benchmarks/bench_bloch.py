"""Bloch-wave propagation speed: forward and forward+backward for the three gradient paths.

Run:  python benchmarks/bench_bloch.py [--threads 2] [--device cpu|cuda] [--dtype float64|float32]
Prints a table and, with --record, appends it to benchmarks/RESULTS.md with machine and date.

Matrices are real quartz structure matrices at an off-axis orientation, with the N beams of
smallest |s_g| inside g_max = 3 Å⁻¹; a batch of orientations is rotated by small random tilts.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from _record import record_results
from edwidgets.crystal import load_structure
from edwidgets.physics.beams import BeamSet, excitation_errors, orientation_from_zone_axis, reciprocal_points_within, rotation_matrix
from edwidgets.physics.bloch import coupling_potentials, propagate, structure_matrix, thickness_to_tau
from edwidgets.physics.constants import electron_wavelength, potential_prefactor
from edwidgets.simulation import ScatteringModel

CASES = [(40, 256), (150, 64), (400, 8), (700, 4)]  # (beams, orientations per batch)


def build_inputs(n_beams: int, batch: int, dtype, device):
    crystal = load_structure("quartz_P3221")
    k = 1.0 / electron_wavelength(200.0)
    recip = crystal.reciprocal_basis()
    base = rotation_matrix((1.0, 0.3, 0.2), math.radians(4.0)) @ orientation_from_zone_axis(crystal.real_basis(), (1, 0, 0))
    hkl = reciprocal_points_within(recip, 3.0)
    s0 = excitation_errors(torch.as_tensor(hkl @ (base @ recip).T), k).numpy()
    order = np.argsort(np.abs(s0))
    order = np.concatenate([[0], order[order != 0]])[:n_beams]
    beams = BeamSet.from_hkl(hkl[order])
    rng = np.random.default_rng(0)
    rots = np.stack([rotation_matrix(rng.normal(size=3), math.radians(0.2) * rng.random()) @ base for _ in range(batch)])
    g_lab = torch.as_tensor(np.einsum("bij,jk,mk->bmi", rots, recip, beams.hkl), dtype=dtype, device=device)
    s = excitation_errors(g_lab, k)
    model = ScatteringModel(crystal, dtype=dtype, device=device)
    f = model.structure_factors(beams.coupling_hkl).detach()
    k_normal = torch.full((batch,), k, dtype=dtype, device=device)
    tau = thickness_to_tau(torch.tensor([800.0], dtype=dtype, device=device), k_normal)
    return dict(f=f, beams=beams, s=s, g_normal=g_lab[..., 2], k_normal=k_normal, k=k, tau=tau,
                prefactor=potential_prefactor(200.0, model.volume))


def run_once(inputs, method: str, backward: bool, device) -> float:
    f = inputs["f"].clone().requires_grad_(backward)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    u = coupling_potentials(f, inputs["prefactor"], inputs["beams"].zero_coupling)
    a = structure_matrix(u, inputs["beams"].coupling_index.to(f.device), inputs["s"], inputs["g_normal"], inputs["k_normal"], inputs["k"])
    if backward:
        phi = propagate(a, inputs["tau"], method)
        loss = (phi.real**2 + phi.imag**2)[..., 1:].sum()
        loss.backward()
    else:
        with torch.no_grad():
            phi = propagate(a, inputs["tau"], method)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def best_of(inputs, method, backward, device, repeats):
    run_once(inputs, method, backward, device)  # warm-up
    return min(run_once(inputs, method, backward, device) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    header = "| beams | batch | eigen fwd (ms/orient.) | eigen fwd+bwd | (fwd+bwd) / fwd | eigh-autograd fwd+bwd | matrix_exp fwd | matrix_exp fwd+bwd | matrix_exp / eigen (fwd+bwd) |"
    lines = [header, "|" + "---|" * 9]
    print("\n".join(lines), flush=True)
    for n_beams, batch in CASES:
        inputs = build_inputs(n_beams, batch, dtype, args.device)
        per = 1000.0 / batch
        eig_f = best_of(inputs, "eigen", False, args.device, args.repeats)
        eig_fb = best_of(inputs, "eigen", True, args.device, args.repeats)
        plain_fb = best_of(inputs, "eigh_autograd", True, args.device, args.repeats)
        exp_f = best_of(inputs, "matrix_exp", False, args.device, args.repeats)
        exp_fb = best_of(inputs, "matrix_exp", True, args.device, args.repeats)
        line = (f"| {n_beams} | {batch} | {eig_f * per:.3f} | {eig_fb * per:.3f} | {eig_fb / eig_f:.2f} | "
                f"{plain_fb * per:.3f} | {exp_f * per:.3f} | {exp_fb * per:.3f} | {exp_fb / eig_fb:.1f} |")
        print(line, flush=True)
        lines.append(line)
    table = "\n".join(lines)
    if args.record:
        record_results("Bloch propagation (bench_bloch.py)", table,
                       f"threads={args.threads}, device={args.device}, dtype={args.dtype}, best of {args.repeats}; times per orientation, one thickness")


if __name__ == "__main__":
    main()
