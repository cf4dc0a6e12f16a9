"""Synthetic-data studies of the paper (Malik, Doherty et al. 2026): Table 1, Supplementary Notes 1–2.

One script, several studies (``--study``):

* ``table1``: quartz, CsPbBr₃ and paracetamol from Δ-Å random starts; kinematical (t fixed at
  10 Å), single constant thickness (dynamical) and ThicknessNN refinements; wR_all, ASU RMSD and
  ADP Frobenius norm next to the paper's values.
* ``starts``: the same three refinements from other start displacements (``--delta 0.1 0.3``).
* ``sine``: ThicknessNN on a sine-like (non-convex) thickness profile (Supplementary Note 1).
* ``noise``: the 10² dynamic-range high-noise dataset (Supplementary Figure S2).
* ``optimizers``: Adam vs L-BFGS, wall time and epochs to reach wR_all 0.02 (Supplementary Note 2).

Every run writes ``studies/runs/<study>/<tag>.json`` (settings, per-epoch wR_all / RMSD / ADP
norm / seconds, final metrics, thickness truth and recovered); ``--report`` turns those files
into a table (printed, and appended to ``studies/RESULTS.md`` with machine, date and commit)
and PNG figures in ``studies/figures/``. ``--report-only`` redraws from existing run files.

Data scale is set per structure in ``SCALES`` (frames, angular range, resolution, s_g^max,
orientation samples per frame, thickness); ``--quick`` shrinks everything for a smoke run.

Example::

    python studies/synthetic_study.py --study table1 --structures quartz --threads 1 --report
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edwidgets.crystal import Site, adp_frobenius, asu_rmsd, load_structure
from edwidgets.experiment.forward import ForwardModel
from edwidgets.experiment.preparation import thickness_search
from edwidgets.experiment.synthetic import make_synthetic_dataset
from edwidgets.io_utils import atomic_write_text
from edwidgets.refine.events import JobState
from edwidgets.refine.job import RefinementJob
from edwidgets.refine.model import RefinementModel, make_thickness_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from _record import git_revision, machine_description  # noqa: E402  (one description for benchmarks and studies)
RUNS = HERE / "runs"
FIGURES = HERE / "figures"
RESULTS = HERE / "RESULTS.md"

#: Paper, Table 1 (0.2 Å starts, 200 epochs): (wR_all, ASU RMSD Å, ADP Frobenius) per model.
PAPER_TABLE1 = {
    "quartz": {"kinematic": (0.452, 0.0347, 0.0154), "single": (0.207, 0.0026, 0.0023), "nn": (0.012, 0.0003, 0.0001)},
    "cspbbr3": {"kinematic": (0.607, 0.0575, 0.0392), "single": (0.121, 0.0080, 0.0160), "nn": (0.020, 0.0004, 0.0011)},
    "paracetamol": {"kinematic": (0.323, 0.0136, 0.0096), "single": (0.0279, 0.0007, 0.0009), "nn": (0.014, 0.0006, 0.0002)},
}
MODEL_LABELS = {"kinematic": "Kinematical (t = 10 Å)", "single": "Dynamical, single thickness", "nn": "ThicknessNN",
                "nn-quadratic": "ThicknessNN + quadratic prior"}
MODEL_ORDER = {kind: i for i, kind in enumerate(MODEL_LABELS)}  # table rows: baselines first

#: Dataset scale per structure (ours; the paper's is larger: see RESULTS.md). ``adp``: "iso" makes an
#: isotropic truth from U_eq; "aniso" keeps the CIF's anisotropic U and refines anisotropic U from
#: an isotropic start (the paper's CsPbBr₃ protocol).
SCALES = {
    "quartz": dict(structure="quartz_P3221", adp="iso", angle_range=(-40.0, 40.0), step_deg=2.0, resolution=1.5,
                   sg_max=0.01, n_samples=5, thickness_mean=800.0),
    "cspbbr3": dict(structure="cspbbr3", adp="aniso", angle_range=(-30.0, 30.0), step_deg=2.0, resolution=1.0,
                    sg_max=0.01, n_samples=3, thickness_mean=1000.0),
    "paracetamol": dict(structure="paracetamol", adp="iso", angle_range=(-30.0, 30.0), step_deg=2.0, resolution=0.8,
                        sg_max=0.008, n_samples=3, thickness_mean=500.0),
}
SCALE_OVERRIDES: dict[str, dict] = {}  # --set key=value (applied to every structure of the run)
QUICK = dict(angle_range=(-6.0, 6.0), step_deg=2.0, n_samples=2)

#: Learning rates. "paper": Adam, 1e-3 for every group, constant. "tuned": per group, with a
#: cosine decay to 5 % over the run (applied by a snapshot listener between epochs).
LR_PRESETS = {
    "paper": dict(lr=1e-3, lrs={}, schedule="none"),
    "tuned": dict(lr=1e-3, lrs={"positions": 4e-3, "adp": 2e-3, "thickness": 3e-3}, schedule="cosine"),
}
GRID_A = np.arange(5.0, 2000.0 + 1e-9, 2.0)  # Fig. S3: 5–2000 Å in 2 Å steps
WR_THRESHOLD = 0.02  # Supplementary Note 2


# --------------------------------------------------------------------------------------------- data
def truth_structure(name: str, adp: str):
    crystal = load_structure(SCALES[name]["structure"])
    if adp == "iso":
        crystal = crystal.replace(sites=[dataclasses.replace(s, u_aniso=None) for s in crystal.sites])
    return crystal


def start_structure(truth, name: str, delta: float, seed: int):
    """Symmetry-aware uniform random displacement in [-Δ, Δ] Å; U × (1 + Δ/Å); isotropic start for
    an anisotropic truth (paper, Results 2.2)."""
    return truth.perturbed(delta, seed=seed, isotropic=SCALES[name]["adp"] == "aniso")


def build_dataset(name: str, *, profile: str, dynamic_range: float, seed: int, quick: bool, amplitude: float = 0.3):
    scale = dict(SCALES[name], **SCALE_OVERRIDES.get(name, {}), **(QUICK if quick else {}))
    truth = truth_structure(name, scale["adp"])
    ds = make_synthetic_dataset(truth, angle_range=scale["angle_range"], step_deg=scale["step_deg"],
                                profile=profile, thickness_mean=scale["thickness_mean"], thickness_amplitude=amplitude,
                                dynamic_range=dynamic_range, noise=True, seed=seed, resolution=scale["resolution"],
                                sg_max=scale["sg_max"], n_samples=scale["n_samples"], name=f"synthetic-{name}")
    return ds, scale


def grid_search(forward, crystal, grid=GRID_A, window_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Best constant thickness of every frame on the whole ``grid`` (per-frame wR_all with its
    closed-form scale) for ``crystal``, by the preparation's search, optionally pooled over frames
    within ±``window_deg``. Returns (t_best, wR_best); frames without reflections get the mean
    thickness and wR NaN."""
    with torch.no_grad():
        search = thickness_search(forward, grid, coarse_stride=1, couplings=forward.couplings(crystal.expand()),
                                  window_deg=window_deg)
    best, best_wr = search.per_frame.astype(float), search.per_frame_wr.astype(float)
    missing = np.array([len(p.rows) == 0 for p in forward.plans])
    if missing.any():  # frames without reflections: borrow the mean
        best_wr[missing] = np.nan
        best[missing] = np.mean(best[~missing])
    return best, best_wr


def wr_at_truth(forward, truth, thickness) -> float:
    """wR_all of the true structure at the true thickness: the noise floor of the dataset."""
    from edwidgets.experiment.residuals import apply_frame_scales, frame_scales, wr_all

    obs = forward.observations
    with torch.no_grad():
        i = forward.intensities(torch.as_tensor(thickness, dtype=forward.dtype), atoms=truth.expand())
        return float(wr_all(apply_frame_scales(i, frame_scales(i, obs), obs.frame_index), obs).value)


# --------------------------------------------------------------------------------------------- refinement
class EpochRecorder:
    """Snapshot listener: per-epoch ASU RMSD and ADP norm to the truth, optional lr schedule."""

    def __init__(self, job, truth, *, schedule: str = "none", floor: float = 0.05, bar=None,
                 epoch_offset: int = 0, total_epochs: int | None = None):
        self.truth, self.job, self.schedule, self.floor, self.bar = truth, job, schedule, floor, bar
        # a later stage of a split run continues the schedule where the earlier one left it
        self.epoch_offset, self.total_epochs = epoch_offset, total_epochs or job.n_epochs
        self.base_lr = [g["lr"] for g in job.optimizer.param_groups]
        self.rmsd: list[float] = []
        self.adp: list[float] = []
        self.wall: list[float] = []
        self.t0 = time.perf_counter()

    def crystal_of(self, atoms):
        sites = [Site(a.label, a.element, a.frac, s.occupancy, a.u_iso, a.u_aniso) for a, s in zip(atoms, self.truth.sites)]
        return self.truth.replace(sites=sites)

    def apply_schedule(self, epoch: int) -> None:
        """Set the optimizer's rates for ``epoch`` of this job (cosine decay to ``floor``)."""
        if self.schedule == "cosine" and self.job.optimizer_name != "lbfgs":
            frac = min((self.epoch_offset + epoch) / max(self.total_epochs, 1), 1.0)
            factor = self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * frac))
            for g, base in zip(self.job.optimizer.param_groups, self.base_lr):
                g["lr"] = base * factor

    def __call__(self, snap) -> None:
        if snap.state is not JobState.RUNNING and snap.state is not JobState.STOPPING:
            return
        crystal = self.crystal_of(snap.atoms)
        self.rmsd.append(asu_rmsd(self.truth, crystal))
        self.adp.append(adp_frobenius(self.truth, crystal))
        self.wall.append(time.perf_counter() - self.t0)
        self.apply_schedule(snap.epoch)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({"wR": f"{snap.wr_all:.4f}", "rmsd": f"{self.rmsd[-1]:.4f}"}, refresh=False)


def site_errors(truth, refined) -> list[dict]:
    """Per-site position error (Å, nearest lattice image) and U Frobenius difference (Å²)."""
    delta = np.array([b.frac for b in refined.sites]) - np.array([a.frac for a in truth.sites])
    d = (delta - np.round(delta)) @ truth.real_basis().T
    du = truth.site_u_cart() - refined.site_u_cart()
    return [{"label": s.label, "element": s.element, "dr": float(np.linalg.norm(d[i])),
             "du": float(np.sqrt(np.sum(du[i] ** 2)))} for i, s in enumerate(truth.sites)]


def refine(forward, truth, start, angles, *, kind: str, t_init, anisotropic: bool | None, epochs: int,
           optimizer: str, lr_preset: str, threads: int, desc: str, seed: int = 0, lbfgs_lr: float = 1.0,
           max_seconds: float | None = None, research_after: int = 0, window_deg: float = 10.0,
           uncertainties: bool = False, loss: str = "wr_all") -> dict:
    """One refinement; returns a JSON-ready record (history and final metrics).

    ``research_after`` > 0 splits the run in two: after that many epochs the thickness is searched
    again on the grid with the structure reached so far, pooled over ±``window_deg`` of frames
    (:func:`grid_search`), the thickness model is re-fitted to that profile, and the remaining
    epochs run from there (fresh optimizer state, the lr schedule continued).

    ``uncertainties``: s.u. of positions and ADPs at the optimum (least-squares normal matrix), and
    from them the ASU RMSD that counting noise alone predicts (:func:`predicted_errors`).
    """
    from tqdm.auto import tqdm

    preset = LR_PRESETS[lr_preset]
    lr = preset["lr"] if optimizer != "lbfgs" else lbfgs_lr
    stages = [epochs] if not research_after else [research_after, epochs - research_after]
    crystal, t_start, research_profile = start, t_init, None
    wr_hist, sec_hist, rmsd, adp, wall = [], [], [], [], []
    done_epochs, elapsed = 0, 0.0
    bar = tqdm(total=epochs, desc=desc, unit="ep", mininterval=5.0, file=sys.stdout)
    for stage, n_epochs in enumerate(stages):
        if stage:
            t_start, _ = grid_search(forward, crystal, window_deg=window_deg)
            research_profile = t_start
        thickness = make_thickness_model(kind if kind != "single" else "constant", angles, t_start, seed=seed,
                                         fit_steps=200)
        model = RefinementModel(crystal, angles, anisotropic=anisotropic, thickness_model=thickness,
                                refine={"thickness": kind != "kinematic"}).to(forward.device)
        job = RefinementJob(forward, model, n_epochs=n_epochs, optimizer=optimizer, lr=lr,
                            lrs=preset["lrs"] if optimizer != "lbfgs" else None, threads=threads, seed=seed, name=desc,
                            uncertainties=uncertainties and stage == len(stages) - 1, loss=loss)
        rec = EpochRecorder(job, truth, schedule=preset["schedule"], bar=bar, epoch_offset=done_epochs,
                            total_epochs=epochs)
        rec.apply_schedule(0)  # the first step of a later stage already takes the continued rate
        unsubscribe = job.subscribe(rec)
        unsub_stop = None
        if max_seconds is not None:  # a wall-time budget (L-BFGS epochs cost many evaluations)
            def stopper(snap, job=job, spent=elapsed):
                if snap.state is JobState.RUNNING and spent + snap.elapsed_s > max_seconds:
                    job.stop()
            unsub_stop = job.subscribe(stopper)
        try:
            result = job.run()
        finally:
            unsubscribe()
            if unsub_stop is not None:
                unsub_stop()
        crystal = result.crystal
        wr_hist += [float(v) for v in result.history["wR_all"]]
        sec_hist += [float(v) for v in result.history["seconds"]]
        rmsd += rec.rmsd
        adp += rec.adp
        wall += [elapsed + w for w in rec.wall]
        best_epoch = done_epochs + int(result.best_epoch)
        done_epochs += int(result.epochs)
        elapsed += float(result.elapsed_s)
    bar.close()
    record = {
        "kind": kind, "optimizer": optimizer, "loss": loss, "lr_preset": lr_preset, "lr": lr, "lrs": preset["lrs"] if optimizer != "lbfgs" else {},
        "schedule": preset["schedule"] if optimizer != "lbfgs" else "none", "epochs": done_epochs,
        "best_epoch": best_epoch, "wR_all": float(result.wr_all), "R_obs": float(result.r_obs),
        "N_obs": int(result.report["N_obs"]), "N_all": int(result.report["N_all"]),
        "rmsd": asu_rmsd(truth, crystal), "adp": adp_frobenius(truth, crystal), "sites": site_errors(truth, crystal),
        "history": {"wR_all": wr_hist, "seconds": sec_hist, "rmsd": rmsd, "adp": adp, "wall": wall},
        "thickness": [float(v) for v in result.thickness],
        "thickness_model": result.settings.get("thickness_model"),
        "elapsed_s": elapsed,
        "n_refined": int(model.n_refined()),
    }
    if uncertainties:
        record["su"] = predicted_errors(truth, crystal, model, result.uncertainties)
    if research_after:
        record["research"] = {"after_epochs": int(research_after), "window_deg": float(window_deg),
                              "profile": [float(v) for v in research_profile]}
    return record


def predicted_errors(truth, refined, model, su) -> dict:
    """Per-site position errors against what the s.u. predict: E|Δr|² = trace of the site's Cartesian
    covariance (positions block, mapped by the ASU's free-direction basis and the cell). The predicted
    ASU RMSD is sqrt(mean over sites of that trace); calibrated s.u. and an error limited by counting
    noise give a measured/predicted ratio near 1."""
    if su is None:
        return {"error": "s.u. not computed"}
    pos = [i for i, n in enumerate(su.parameter_names) if n.startswith("positions[")]
    basis = model.asu.position_basis.detach().cpu().numpy()
    c_frac = basis @ su.covariance[np.ix_(pos, pos)] @ basis.T
    orth = truth.real_basis()
    expected = np.array([np.trace(orth @ c_frac[3 * i:3 * i + 3, 3 * i:3 * i + 3] @ orth.T)
                         for i in range(len(truth.sites))])
    measured = np.array([e["dr"] for e in site_errors(truth, refined)])
    hydrogen = np.array([s.element == "H" for s in truth.sites])
    out = {"predicted_rmsd": float(np.sqrt(expected.mean())), "measured_rmsd": float(np.sqrt(np.mean(measured ** 2))),
           "goodness_of_fit": su.goodness_of_fit,
           "sites": [{"label": s.label, "error_A": float(m), "predicted_A": float(np.sqrt(e))}
                     for s, m, e in zip(truth.sites, measured, expected)]}
    for name, mask in (("non_h", ~hydrogen), ("h", hydrogen)):
        if mask.any():
            out[f"predicted_rmsd_{name}"] = float(np.sqrt(expected[mask].mean()))
            out[f"measured_rmsd_{name}"] = float(np.sqrt(np.mean(measured[mask] ** 2)))
    return out


def run_structure(name: str, args, *, study: str, delta: float, models, profile: str = "smooth_random",
                  dynamic_range: float = 1e6, optimizers=("adam",), tag_extra: str = "") -> list[dict]:
    """Dataset + start model of one structure, then each requested refinement; writes run files."""
    t0 = time.perf_counter()
    ds, scale = build_dataset(name, profile=profile, dynamic_range=dynamic_range, seed=args.seed, quick=args.quick,
                              amplitude=args.amplitude)
    truth = ds.truth
    exp = ds.experiment
    start = start_structure(truth, name, delta, seed=args.seed + 100)
    forward = ForwardModel(exp, start, g_max=scale["resolution"], resolution=scale["resolution"], sg_max=scale["sg_max"],
                           n_samples=scale["n_samples"], selection=None, device=args.device)
    beams = forward.beam_counts()
    floor = wr_at_truth(forward, truth, ds.thickness)
    t_grid, _ = grid_search(forward, start)
    t_grid_truth, _ = grid_search(forward, truth)
    setup_s = time.perf_counter() - t0
    angles = np.asarray(exp.frame_angle_deg, float)
    info = {
        "structure": name, "study": study, "delta": delta, "profile": profile, "dynamic_range": dynamic_range,
        "seed": args.seed, "scale": {k: (list(v) if isinstance(v, tuple) else v) for k, v in scale.items()},
        "n_frames": int(exp.n_frames), "n_reflections": int(forward.n_reflections),
        "beams_per_frame": {"mean": float(beams.mean()), "max": int(beams.max())},
        "start_rmsd": asu_rmsd(truth, start), "start_adp": adp_frobenius(truth, start), "wR_truth": floor,
        "frame_angle_deg": angles.tolist(), "thickness_truth": ds.thickness.tolist(),
        "thickness_grid_start": t_grid.tolist(), "thickness_grid_truth": t_grid_truth.tolist(), "setup_s": setup_s,
        "threads": args.threads, "device": str(args.device or "cpu"), "epochs_requested": args.epochs,
    }
    print(f"\n== {name} ({study}, Δ={delta} Å, {profile}, I_max={dynamic_range:g}): {exp.n_frames} frames "
          f"{angles.min():.0f}..{angles.max():.0f}°, {forward.n_reflections} reflections, beams/frame mean "
          f"{beams.mean():.0f} max {beams.max()}, {forward.n_samples} samples/frame; start RMSD {info['start_rmsd']:.4f} Å, "
          f"ADP {info['start_adp']:.5f}; wR_all at truth {floor:.4f}; grid-search mean t {t_grid.mean():.0f} Å "
          f"(truth mean {ds.thickness.mean():.0f}); set-up {setup_s:.1f} s", flush=True)
    anisotropic = True if scale["adp"] == "aniso" else None
    records = []
    for kind in models:
        for opt in optimizers:
            # single: the mean of the per-frame grid search (Fig. S3), then refined; NN: warm-started flat at the
            # grid's median (the per-frame optimum of a 0.2 Å start model is too erratic to fit a profile to)
            t_init = float(np.median(t_grid)) if kind.startswith("nn") else float(np.mean(t_grid))
            rec = refine(forward, truth, start, angles, kind=kind, t_init=t_init, anisotropic=anisotropic,
                         epochs=args.epochs, optimizer=opt, lr_preset=args.lr_preset if opt != "lbfgs" else "paper",
                         threads=args.threads, desc=f"{name} {kind} {opt}", seed=args.seed,
                         max_seconds=args.max_seconds, research_after=args.research_after,
                         window_deg=args.window_deg, uncertainties=args.su, loss=args.loss)
            rec.update(info)
            rec["thickness_rms_error"] = float(np.sqrt(np.mean((np.asarray(rec["thickness"]) - ds.thickness) ** 2)))
            if opt == "lbfgs" or len(optimizers) > 1:
                rec.update(time_to_threshold(rec, WR_THRESHOLD))
            tag = f"{name}_{kind}_{opt}_d{delta:g}_{profile}_dr{dynamic_range:g}{tag_extra}{'_quick' if args.quick else ''}"
            path = RUNS / f"{study}{tag_extra}" / f"{tag}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(rec, indent=1))
            print(f"   {kind:9s} {opt:5s}: wR_all {rec['wR_all']:.4f}  RMSD {rec['rmsd']:.5f} Å  ADP {rec['adp']:.5f}  "
                  f"t-RMS err {rec['thickness_rms_error']:.1f} Å  ({rec['elapsed_s']:.0f} s, "
                  f"{np.mean(rec['history']['seconds']):.2f} s/epoch, best epoch {rec['best_epoch']})", flush=True)
            records.append(rec)
    return records


def model_label(run: dict) -> str:
    """The thickness model, and the loss when it is not the paper's wR_all."""
    label = MODEL_LABELS.get(run["kind"], run["kind"])
    loss = run.get("loss", "wr_all")
    return label if loss == "wr_all" else f"{label}, loss {loss}"


def table_su(runs: list[dict]) -> str:
    """Measured ASU RMSD against the one the s.u. predict (runs made with --su)."""
    rows = ["| structure | model | measured RMSD (Å) | predicted from s.u. (Å) | ratio | non-H measured / predicted (Å) "
            "| H measured / predicted (Å) | goodness of fit |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        su = r.get("su")
        if not su or "predicted_rmsd" not in su:
            continue
        pair = lambda k: (f"{su[f'measured_rmsd_{k}']:.5f} / {su[f'predicted_rmsd_{k}']:.5f}"  # noqa: E731
                          if f"predicted_rmsd_{k}" in su else "—")
        rows.append(f"| {r['structure']} | {model_label(r)} | {su['measured_rmsd']:.5f} | "
                    f"{su['predicted_rmsd']:.5f} | {su['measured_rmsd'] / su['predicted_rmsd']:.2f} | {pair('non_h')} | "
                    f"{pair('h')} | {su['goodness_of_fit']:.2f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def time_to_threshold(rec: dict, threshold: float) -> dict:
    """First epoch (and cumulative wall seconds of the optimizer) at which wR_all < threshold."""
    wr = np.asarray(rec["history"]["wR_all"])
    secs = np.cumsum(rec["history"]["seconds"])
    hit = np.flatnonzero(wr < threshold)
    if hit.size == 0:
        return {"threshold": threshold, "epochs_to_threshold": None, "seconds_to_threshold": None}
    e = int(hit[0])
    # wR of entry e is measured at the start of step e+1: the time spent is that of the e steps before it
    return {"threshold": threshold, "epochs_to_threshold": e, "seconds_to_threshold": float(secs[e - 1]) if e else 0.0}


# --------------------------------------------------------------------------------------------- reporting
def load_runs(study: str, quick: bool = False) -> list[dict]:
    out = []
    for p in sorted((RUNS / study).glob("*.json")):
        if p.stem.endswith("_quick") != quick:
            continue
        out.append(json.loads(p.read_text()))
    return out


def fmt(v, digits=4) -> str:
    if v is None:
        return "—"
    return f"{v:.{digits}f}"


def dataset_lines(runs: list[dict]) -> list[str]:
    seen, lines = set(), []
    for r in runs:
        key = (r["structure"], r["delta"], r["profile"], r["dynamic_range"])
        if key in seen:
            continue
        seen.add(key)
        s = r["scale"]
        lines.append(f"- {r['structure']} (Δ={r['delta']} Å, {r['profile']}, I_max={r['dynamic_range']:g}): "
                     f"{r['n_frames']} frames {s['angle_range'][0]:.0f}..{s['angle_range'][1]:.0f}° step {s['step_deg']}°, "
                     f"resolution/g_max {s['resolution']} Å⁻¹, s_g^max {s['sg_max']} Å⁻¹, {s['n_samples']} samples/frame, "
                     f"{r['n_reflections']} reflections, beams/frame mean {r['beams_per_frame']['mean']:.0f} "
                     f"(max {r['beams_per_frame']['max']}), truth t mean {np.mean(r['thickness_truth']):.0f} Å "
                     f"({min(r['thickness_truth']):.0f}–{max(r['thickness_truth']):.0f}), ADP truth {s['adp']}; "
                     f"start RMSD {r['start_rmsd']:.4f} Å, start ADP norm {r['start_adp']:.5f}; "
                     f"wR_all of the truth (noise floor) {r['wR_truth']:.4f}")
    return lines


def t_err_text(r: dict) -> str:
    return "fixed 10 Å" if r["kind"] == "kinematic" else f"{r['thickness_rms_error']:.1f}"


def lr_text(r: dict) -> str:
    if r["optimizer"] == "lbfgs":
        return f"L-BFGS lr {r['lr']:g}"
    rates = [r["lrs"].get(g, r["lr"]) for g in ("positions", "adp", "thickness")]
    return "/".join(f"{v:g}" for v in rates) + f", {r['schedule']}"


def table_models(runs: list[dict], paper: bool) -> str:
    head = ("| structure | Δ (Å) | model | wR_all | ASU RMSD (Å) | ADP Frobenius (Å²) | t RMS err (Å) | epochs (best) | s/epoch "
            "| lr pos/adp/t, schedule |")
    if paper:
        head += " paper wR / RMSD / ADP |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(runs, key=lambda r: (r["structure"], r["delta"], r["profile"], MODEL_ORDER.get(r["kind"], 9))):
        row = (f"| {r['structure']} | {r['delta']:g} | {model_label(r)} | {fmt(r['wR_all'])} | "
               f"{fmt(r['rmsd'], 5)} | {fmt(r['adp'], 5)} | {t_err_text(r)} | {r['epochs']} ({r['best_epoch']}) | "
               f"{np.mean(r['history']['seconds']):.2f} | {lr_text(r)} |")
        if paper:
            p = PAPER_TABLE1.get(r["structure"], {}).get(r["kind"])
            row += f" {p[0]} / {p[1]} / {p[2]} |" if p and abs(r["delta"] - 0.2) < 1e-9 else " — |"
        rows.append(row)
    return "\n".join(rows)


def table_optimizers(runs: list[dict]) -> str:
    head = ("| structure | optimizer | epochs to wR<0.02 | seconds to wR<0.02 | final wR_all | RMSD (Å) | ADP (Å²) | "
            "epochs run | s/epoch |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(runs, key=lambda r: (r["structure"], r["optimizer"])):
        e, s = r.get("epochs_to_threshold"), r.get("seconds_to_threshold")
        rows.append(f"| {r['structure']} | {r['optimizer']} | {e if e is not None else 'not reached'} | "
                    f"{fmt(s, 1) if s is not None else 'not reached'} | {fmt(r['wR_all'])} | {fmt(r['rmsd'], 5)} | "
                    f"{fmt(r['adp'], 5)} | {r['epochs']} | {np.mean(r['history']['seconds']):.2f} |")
    return "\n".join(rows)


def compare_to_paper(ours: float, paper: float) -> str:
    """"yes" at or below the paper's value, "≈" equal once rounded to the paper's printed digits
    (at least 3 decimals, Table 1 prints 0.020), "no" above."""
    if ours <= paper:
        return "yes"
    decimals = max(3, len(repr(paper).split(".")[1]))
    return "≈" if round(ours, decimals) <= paper else "no"


def summary_table() -> str:
    """Table 1 next to the paper: baselines from ``table1``, ThicknessNN from every Table-1 variant
    (``table1`` and ``table1_*`` run folders), with whether each NN metric is at or below the paper's."""
    rows = ["| structure | model | variant | wR_all | ASU RMSD (Å) | ADP Frob. (Å²) | paper wR / RMSD / ADP | ≤ paper (wR/RMSD/ADP) |",
            "|---|---|---|---|---|---|---|---|"]
    folders = sorted(p for p in RUNS.glob("table1*") if p.is_dir())
    runs = []
    for folder in folders:
        variant = folder.name[len("table1"):].lstrip("_") or "tuned"
        for r in load_runs(folder.name):
            if folder.name != "table1" and r["kind"] != "nn":
                continue
            runs.append((variant, r))
    for variant, r in sorted(runs, key=lambda vr: (vr[1]["structure"], MODEL_ORDER[vr[1]["kind"]], vr[0])):
        p = PAPER_TABLE1[r["structure"]][r["kind"]]
        ours = (r["wR_all"], r["rmsd"], r["adp"])
        met = "/".join(compare_to_paper(o, t) for o, t in zip(ours, p)) if r["kind"] == "nn" else "—"
        rows.append(f"| {r['structure']} | {MODEL_LABELS[r['kind']]} | {variant} ({r['n_reflections']} refl.) | "
                    f"{fmt(ours[0])} | {fmt(ours[1], 5)} | {fmt(ours[2], 5)} | {p[0]} / {p[1]} / {p[2]} | {met} |")
    return "\n".join(rows)


def plot_study(study: str, runs: list[dict], suffix: str = "") -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    paths = []
    colours = {"kinematic": "tab:red", "single": "tab:orange", "nn": "tab:blue", "nn-quadratic": "tab:green"}
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["structure"], r["delta"], r["profile"], r["dynamic_range"]), []).append(r)
    # curves: one row per dataset, columns wR_all, RMSD, ADP (x: epoch, or wall seconds for optimizers)
    keys = sorted(groups)
    fig, axes = plt.subplots(len(keys), 3, figsize=(13, 3.1 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        for r in sorted(groups[key], key=lambda r: r["kind"]):
            if study.startswith("optimizers"):
                x = np.cumsum(r["history"]["seconds"]) - np.asarray(r["history"]["seconds"])
                label, colour = r["optimizer"], ("tab:blue" if r["optimizer"] == "adam" else "tab:green")
            else:
                x = np.arange(len(r["history"]["wR_all"]))
                label, colour = MODEL_LABELS.get(r["kind"], r["kind"]), colours.get(r["kind"])
            n = min(len(x), len(r["history"]["rmsd"]))
            axes[row, 0].semilogy(x, r["history"]["wR_all"], color=colour, label=label)
            axes[row, 1].semilogy(x[:n], r["history"]["rmsd"][:n], color=colour, label=label)
            axes[row, 2].semilogy(x[:n], r["history"]["adp"][:n], color=colour, label=label)
        if study.startswith("optimizers"):
            axes[row, 0].axhline(WR_THRESHOLD, color="k", lw=0.8, ls=":")
        name, delta, profile, dr = key
        axes[row, 0].set_ylabel(f"{name}\nΔ={delta:g} Å {profile}\nI_max={dr:g}")
        for c, title in enumerate(("wR_all", "ASU RMSD to truth (Å)", "ADP Frobenius norm (Å²)")):
            axes[row, c].set_title(title, fontsize=9)
            axes[row, c].set_xlabel("wall seconds" if study.startswith("optimizers") else "epoch")
            axes[row, c].grid(True, which="both", alpha=0.3)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    path = FIGURES / f"{study}{suffix}_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    # thickness: truth vs recovered per dataset
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.6), squeeze=False)
    for col, key in enumerate(keys):
        ax = axes[0, col]
        first = groups[key][0]
        ang = np.asarray(first["frame_angle_deg"])
        ax.plot(ang, first["thickness_truth"], "k-", lw=2.5, label="truth")
        ax.plot(ang, first["thickness_grid_start"], ".", color="0.6", ms=5, label="grid search (start model)")
        for r in groups[key]:
            if r["kind"] == "kinematic":
                continue
            label = (r["optimizer"] if study.startswith("optimizers") else MODEL_LABELS.get(r["kind"], r["kind"]))
            ax.plot(ang, r["thickness"], "--" if r["kind"] == "single" else "-", color=colours.get(r["kind"]) if not study.startswith("optimizers")
                    else ("tab:blue" if r["optimizer"] == "adam" else "tab:green"), label=label)
        name, delta, profile, dr = key
        ax.set_title(f"{name} Δ={delta:g} Å {profile} I_max={dr:g}", fontsize=9)
        ax.set_xlabel("frame angle θ (°)")
        ax.set_ylabel("thickness (Å)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = FIGURES / f"{study}{suffix}_thickness.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    return paths


def report(study: str, args, note: str = "") -> str:
    runs = load_runs(study, quick=args.quick)
    if not runs:
        print(f"no run files under {RUNS / study}")
        return ""
    table = table_optimizers(runs) if study.startswith("optimizers") else table_models(runs, paper=study.startswith("table1"))
    su_table = table_su(runs)
    if su_table:
        table += "\n\nStandard uncertainties at the optimum (normal matrix of the loss's weights, scaled by the "\
                 "goodness of fit) and the ASU RMSD they predict, sqrt(mean over sites of trace(Cartesian covariance)):\n\n" + su_table
    suffix = "_quick" if args.quick else ""
    figs = plot_study(study, runs, suffix)
    print("\n" + table)
    if args.quick:
        return table
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    r0 = runs[0]
    lines = [f"\n## {study} — {stamp}\n",
             f"Machine: {machine_description()}; commit {git_revision()}; threads per process {r0['threads']}; "
             f"Adam lr preset `{r0['lr_preset'] if r0['optimizer'] != 'lbfgs' else runs[-1]['lr_preset']}` "
             f"({LR_PRESETS[args.lr_preset]}); epochs {r0['epochs_requested']}; noise seed {r0['seed']}.\n",
             "Datasets:\n", *dataset_lines(runs), "", table, "",
             "Figures: " + ", ".join(f"`{p.relative_to(HERE)}`" for p in figs)]
    if note:
        lines += ["", note]
    block = "\n".join(lines) + "\n"
    if not RESULTS.exists():
        atomic_write_text(RESULTS, "# Synthetic-data studies (issue 5)\n\nSections are appended by "
                          "`studies/synthetic_study.py --report`; see the top summary for context.\n")
    atomic_write_text(RESULTS, RESULTS.read_text() + block)
    return table


# --------------------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=("table1", "starts", "sine", "noise", "optimizers"))
    ap.add_argument("--structures", nargs="+", default=None, choices=sorted(SCALES))
    ap.add_argument("--models", nargs="+", default=None, choices=tuple(MODEL_LABELS))
    ap.add_argument("--delta", nargs="+", type=float, default=None, help="start displacement(s), Å")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lr-preset", default="tuned", choices=sorted(LR_PRESETS))
    ap.add_argument("--lrs", default=None, help="override the tuned per-group rates, e.g. positions=6e-3,adp=2e-3")
    ap.add_argument("--set", default=None, help="dataset scale overrides, e.g. resolution=1.0,sg_max=0.008,angle_range=-60:60")
    ap.add_argument("--tag", default="", help="suffix of the run files (variants of one study)")
    ap.add_argument("--amplitude", type=float, default=0.3, help="relative thickness variation of the profile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss", default="wr_all", choices=("wr_all", "frame_mean", "wr2"),
                    help="refinement loss (default wR_all, Methods 4.2; wr2: σ-weighted, w = 1/σ²(I))")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop a refinement after this much optimizer time")
    ap.add_argument("--research-after", type=int, default=0,
                    help="after this many epochs, search the thickness again with the structure so far, pooled "
                         "over ±--window-deg of frames, re-fit the thickness model and run the remaining epochs")
    ap.add_argument("--window-deg", type=float, default=10.0, help="frame window of --research-after (degrees)")
    ap.add_argument("--su", action="store_true",
                    help="standard uncertainties at the optimum and the ASU RMSD they predict (run file key 'su')")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="torch device of the forward model, e.g. cuda (default: CPU)")
    ap.add_argument("--quick", action="store_true", help="tiny datasets for a smoke run (run files tagged _quick)")
    ap.add_argument("--report", action="store_true", help="after running, print the table, append to RESULTS.md, plot")
    ap.add_argument("--report-only", action="store_true", help="only report existing run files")
    ap.add_argument("--summary", action="store_true", help="append the Table 1 summary (all table1* runs) to RESULTS.md")
    ap.add_argument("--note", default="", help="text appended under the table in RESULTS.md")
    args = ap.parse_args(argv)
    if args.summary:
        args.study = args.study or "table1"
    elif args.study is None:
        ap.error("--study is required (or --summary)")
    torch.set_num_threads(args.threads)
    for name in SCALES:
        for kv in (args.set.split(",") if args.set else []):
            k, v = kv.split("=")
            value = v if k == "adp" else tuple(float(x) for x in v.split(":")) if ":" in v else float(v)
            SCALE_OVERRIDES.setdefault(name, {})[k] = value
    if args.lrs:
        LR_PRESETS[args.lr_preset] = dict(LR_PRESETS[args.lr_preset], lrs=dict(
            LR_PRESETS[args.lr_preset]["lrs"], **{k: float(v) for k, v in (kv.split("=") for kv in args.lrs.split(","))}))
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    defaults = {
        "table1": dict(structures=["quartz", "cspbbr3", "paracetamol"], models=["kinematic", "single", "nn"], delta=[0.2]),
        "starts": dict(structures=["quartz"], models=["kinematic", "single", "nn"], delta=[0.1, 0.3]),
        "sine": dict(structures=["quartz"], models=["single", "nn"], delta=[0.2]),
        "noise": dict(structures=["quartz"], models=["single", "nn"], delta=[0.2]),
        "optimizers": dict(structures=["quartz"], models=["nn"], delta=[0.1]),
    }[args.study]
    structures = args.structures or defaults["structures"]
    models = args.models or defaults["models"]
    deltas = args.delta or defaults["delta"]
    if not args.report_only and not args.summary:
        for name in structures:
            for delta in deltas:
                kw = {}
                if args.study == "sine":
                    kw["profile"] = "sine"
                if args.study == "noise":
                    kw["dynamic_range"] = 1e2
                if args.study == "optimizers":
                    kw["optimizers"] = ("adam", "lbfgs")
                run_structure(name, args, study=args.study, delta=delta, models=models, tag_extra=args.tag, **kw)
    if args.summary:
        table = summary_table()
        print(table)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        atomic_write_text(RESULTS, RESULTS.read_text() + f"\n## Table 1 summary vs the paper — {stamp}\n\n"
                          f"commit {git_revision()}; all runs 200 epochs from 0.2 Å starts.\n\n{table}\n")
        return 0
    if args.report or args.report_only:
        report(args.study + args.tag, args, note=args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
