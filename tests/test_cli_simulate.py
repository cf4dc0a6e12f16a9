"""`edwidgets simulate` run end to end as a user would, in a subprocess."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edwidgets", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_simulate_writes_table_and_plots(tmp_path):
    out = tmp_path / "sim"
    proc = run_cli("simulate", "--structure", "quartz_P3221", "--zone-axis", "0", "0", "1", "--thickness", "400", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "pattern.csv")
    assert {"h", "k", "l", "intensity", "intensity_kinematic", "excitation_error"} <= set(table.columns)
    assert abs(table["intensity"].sum() - 1.0) < 1e-9  # unitarity survives the round trip
    for name in ("pattern.png", "pendellosung.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "transmitted beam" in proc.stdout


def test_simulate_bad_structure_is_a_clear_error(tmp_path):
    proc = run_cli("simulate", "--structure", "no_such_thing", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no_such_thing" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 5\n")
    proc = run_cli("simulate", "--structure", str(bad), "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.cif" in proc.stderr and "Traceback" not in proc.stderr
