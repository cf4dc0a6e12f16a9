"""The outcome of a refinement: refined structure (CIF with s.u.), summary JSON, per-frame table, plots."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
import pandas as pd

from ..io_utils import atomic_write_text


def format_with_su(value: float, su: float | None, max_decimals: int = 6) -> str:
    """CIF notation value(su): the s.u. rounded to 1–2 significant digits (2 when it starts with 1)."""
    if su is None or not math.isfinite(su) or su < 0.5 * 10.0 ** -(max_decimals + 2):
        # no s.u., or one below the last printed digit (rounding noise on a symmetry-fixed value)
        return repr(float(value)) if value != 0 else "0"
    exponent = math.floor(math.log10(su))
    digits = 2 if su / 10**exponent < 2.0 else 1
    decimals = min(max(0, -(exponent - digits + 1)), max_decimals + 2)
    su_int = int(round(su * 10**decimals))
    if su_int == 0:
        su_int = 1
    return f"{value:.{decimals}f}({su_int})"


def _jsonable(obj: Any):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


@dataclass
class RefinementResult:
    """Best parameters of a refinement and everything reported about them.

    ``report`` holds R_obs, wR_all, wR_F (fractions), N_obs, N_all of the best epoch, over every
    reflection (training and validation frames).
    """

    crystal: Any  # refined Crystal (best epoch)
    start_crystal: Any
    state: str
    report: dict[str, float]
    wr_validation: float | None
    best_epoch: int
    epochs: int
    history: dict[str, np.ndarray]
    frame_angle_deg: np.ndarray
    thickness: np.ndarray
    frame_scale: np.ndarray
    frame_r: np.ndarray
    frame_n: np.ndarray
    elapsed_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    uncertainties: Any = None  # edwidgets.refine.uncertainties.Uncertainties
    message: str = ""
    error: str | None = None

    @property
    def wr_all(self) -> float:
        return float(self.report["wR_all"])

    @property
    def r_obs(self) -> float:
        return float(self.report["R_obs"])

    def frames_table(self) -> pd.DataFrame:
        """Per frame: angle, thickness, scale, R (fraction), number of reflections."""
        return pd.DataFrame({
            "frame": np.arange(len(self.frame_angle_deg)),
            "angle_deg": self.frame_angle_deg,
            "thickness_A": self.thickness,
            "scale": self.frame_scale,
            "R": self.frame_r,
            "n_reflections": self.frame_n,
        })

    def summary(self) -> dict[str, Any]:
        """Plain JSON-ready summary (R values as fractions)."""
        seconds = np.asarray(self.history.get("seconds", []), dtype=float)
        out = {
            "R_obs": self.report["R_obs"],
            "wR_all": self.report["wR_all"],
            "wR_F": self.report.get("wR_F"),
            "N_obs": self.report["N_obs"],
            "N_all": self.report["N_all"],
            # the authors' convention (their code's R_obs and wR2): means over frames, see residuals.frame_means
            "R_obs_frame_mean": self.report.get("R_obs_frame_mean"),
            "wR_all_frame_mean": self.report.get("wR_all_frame_mean"),
            "wR_validation": self.wr_validation,
            "state": self.state,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "thickness_per_frame_A": self.thickness,
            "frame_angle_deg": self.frame_angle_deg,
            "timings": {"total_s": self.elapsed_s,
                        "mean_epoch_s": float(seconds.mean()) if seconds.size else None,
                        "median_epoch_s": float(np.median(seconds)) if seconds.size else None},
            "settings": self.settings,
            "structure": {"name": self.crystal.name, "space_group": self.crystal.space_group_name,
                          "cell": list(self.crystal.cell)},
            "message": self.message,
            "error": self.error,
        }
        if self.uncertainties is not None:
            out["uncertainties"] = self.uncertainties.summary()
        return _jsonable(out)

    def to_cif_string(self) -> str:
        """The refined structure as CIF, with s.u. in parentheses when they were computed."""
        text = self.crystal.to_cif_string()
        su = self.uncertainties
        if su is None:
            return text
        doc = gemmi.cif.read_string(text)
        block = doc.sole_block()
        table = block.find("_atom_site_", ["label", "fract_x", "fract_y", "fract_z", "U_iso_or_equiv"])
        index = {s.label: i for i, s in enumerate(self.crystal.sites)}
        for row in table:
            i = index[gemmi.cif.as_string(row[0])]
            site = self.crystal.sites[i]
            for j in range(3):
                row[1 + j] = format_with_su(site.frac[j], su.site_frac_su[i][j])
            row[4] = format_with_su(site.u_iso, su.site_u_iso_su[i])
        aniso = block.find("_atom_site_aniso_", ["label", "U_11", "U_22", "U_33", "U_12", "U_13", "U_23"])
        for row in aniso:
            i = index[gemmi.cif.as_string(row[0])]
            site = self.crystal.sites[i]
            sus = su.site_u_cif_su[i]
            for j in range(6):
                row[1 + j] = format_with_su(site.u_aniso[j], None if sus is None else sus[j])
        block.set_pair("_refine_ls_wR_factor_all", f"{self.report['wR_all']:.5f}")
        block.set_pair("_refine_ls_R_factor_gt", f"{self.report['R_obs']:.5f}")
        block.set_pair("_refine_ls_number_reflns", str(int(self.report["N_all"])))
        if su.goodness_of_fit is not None:
            block.set_pair("_refine_ls_goodness_of_fit_ref", f"{su.goodness_of_fit:.4f}")
        return doc.as_string()

    def write(self, out_dir) -> dict[str, Path]:
        """Write refined.cif, summary.json, frames.csv, r_curves.png, thickness.png (all atomic)."""
        from ..plots import plot_curves

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "cif": atomic_write_text(out / "refined.cif", self.to_cif_string()),
            "summary": atomic_write_text(out / "summary.json", json.dumps(self.summary(), indent=2) + "\n"),
            "frames": atomic_write_text(out / "frames.csv", self.frames_table().to_csv(index=False)),
        }
        epochs = np.asarray(self.history.get("epoch", []), dtype=float)
        if epochs.size:
            curves = {"wR_all": np.asarray(self.history["wR_all"]), "R_obs": np.asarray(self.history["R_obs"])}
            val = np.asarray(self.history.get("wR_val", []), dtype=float)
            if val.size and np.isfinite(val).any():
                curves["wR validation"] = val
            paths["r_curves"] = plot_curves(epochs, curves, out / "r_curves.png", xlabel="epoch",
                                            ylabel="residual (fraction)", title="R values", logy=True)
        order = np.argsort(self.frame_angle_deg)
        paths["thickness"] = plot_curves(self.frame_angle_deg[order], {"thickness": self.thickness[order]},
                                         out / "thickness.png", xlabel="frame angle (deg)", ylabel="thickness (Å)",
                                         title="Thickness vs tilt")
        return paths
