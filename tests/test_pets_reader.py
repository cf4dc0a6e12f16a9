"""PETS2 readers/writer: real files, exact round trip, and clear errors on malformed input."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edwidgets.errors import InputFileError
from edwidgets.experiment.pets import EmptyFramesWarning, PetsData, parse_details, read_hkl, read_pets, write_pets

UB_LINES = """_diffrn_orient_matrix_UB_11 0.2
_diffrn_orient_matrix_UB_12 0.0
_diffrn_orient_matrix_UB_13 0.0
_diffrn_orient_matrix_UB_21 0.0
_diffrn_orient_matrix_UB_22 0.2
_diffrn_orient_matrix_UB_23 0.0
_diffrn_orient_matrix_UB_31 0.0
_diffrn_orient_matrix_UB_32 0.0
_diffrn_orient_matrix_UB_33 0.2"""


def synthetic_text(*, ub: str = UB_LINES, wavelength: str = "_diffrn_radiation_wavelength 0.0251",
                   frames: str | None = None, reflections: str | None = None) -> str:
    """A minimal but complete .cif_pets text (line numbers matter for the tests below)."""
    if frames is None:
        frames = """loop_
_diffrn_zone_axis_id
_diffrn_zone_axis_precession_angle
_diffrn_zone_axis_alpha
_diffrn_zone_axis_beta
_diffrn_zone_axis_omega
_diffrn_zone_axis_scale
1 0.5 -1.0 0.0 10.0 1.0
2 0.5 0.0 0.0 10.0 1.0
"""
    if reflections is None:
        reflections = """loop_
_refln_index_h
_refln_index_k
_refln_index_l
_refln_intensity_meas
_refln_intensity_sigma
_refln_zone_axis_id
1 0 0 100.0 10.0 1
0 1 0 50.0 5.0 1
1 1 0 20.0 4.0 2
"""
    return f"""data_pets
_cell_length_a 5.0
_cell_length_b 5.0
_cell_length_c 5.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
{wavelength}
{ub}
_diffrn_measurement_details
;
data collection geometry: continuous rotation
mosaicity: 0.05
rotation axis position: 10.0
;

{frames}
{reflections}"""


def write(tmp_path: Path, text: str, name: str = "x.cif_pets", crlf: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", "\r\n" if crlf else "\n").encode())
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# --- real files ---------------------------------------------------------------------------------
def test_quartz_file(shared_data):
    data = read_pets(shared_data / "quartz" / "quartz.cif_pets")
    assert data.n_frames == 99 and len(data.reflections) == 6666
    assert data.wavelength == 0.0251
    assert data.cell == (4.9226, 4.9226, 5.4003, 90.0, 90.0, 120.0)
    assert data.ub[0, 0] == -0.07048 and data.ub[2, 1] == 0.18790
    assert data.geometry == "continuous" and data.rotation_axis_deg == 0.484 and data.mosaicity_deg == 0.05
    assert data.details["dstarmax"] == "1.800" and data.details["RC width"] == "0.00100"
    assert list(data.frames.columns) == ["frame", "u", "v", "w", "precession_angle", "alpha", "beta", "omega", "scale"]
    first = data.frames.iloc[0]
    assert (first.frame, first.alpha, first.beta, first.omega, first.scale) == (1, -49.197, -0.130, 0.287, 0.748)
    assert list(data.reflections.columns) == ["h", "k", "l", "I", "sigma", "frame"]
    assert data.reflections.iloc[-1].tolist() == [-4, 2, 7, 62.09, 114.53, 99]
    assert data.reflections["h"].dtype == np.int64 and data.reflections["frame"].dtype == np.int64
    assert data.empty_frames == ()
    assert np.all(data.frame_half_widths_deg == 1.0)


def test_glycine_files(shared_data):
    with pytest.warns(EmptyFramesWarning, match=r"glycine_dyn.cif_pets: 10 of 31 frames .* 1-2, 4, 8"):
        dyn = read_pets(shared_data / "glycine" / "glycine_dyn.cif_pets")
    assert dyn.rotation_axis_deg == 230.391 and dyn.mosaicity_deg == 0.21
    assert dyn.details["Virtual frame settings: number of merged frames"] == "7"
    assert dyn.details["Virtual frame settings: step between frames"] == "5"
    assert dyn.extra["_diffrn_pets_omega"] == "0.00000"
    assert len(dyn.empty_frames) == 10 and dyn.n_frames == 31
    with pytest.warns(EmptyFramesWarning):
        kin = read_pets(shared_data / "glycine" / "glycine.cif_pets")
    hkl = read_hkl(shared_data / "glycine" / "glycine.hkl")
    assert list(hkl.columns) == ["h", "k", "l", "I", "sigma", "frame", "flag"]
    pd.testing.assert_frame_equal(hkl[["h", "k", "l", "I", "sigma", "frame"]], kin.reflections)


@pytest.mark.parametrize("name", ["quartz/quartz.cif_pets", "glycine/glycine.cif_pets", "glycine/glycine_dyn.cif_pets"])
def test_real_round_trip(shared_data, tmp_path, name):
    original = read_pets(shared_data / name, empty_frames="ignore")
    written = write_pets(original, tmp_path / "copy.cif_pets")
    again = read_pets(written, empty_frames="ignore")
    assert again == original
    assert [p.name for p in tmp_path.iterdir()] == ["copy.cif_pets"]  # no temporary left behind


def test_real_file_error_has_true_line_number(shared_data, tmp_path):
    """Edit a copy of the real CRLF file: a negative sigma is reported on its own line."""
    raw = (shared_data / "quartz" / "quartz.cif_pets").read_bytes()
    lines = raw.split(b"\r\n")
    target = next(i for i, line in enumerate(lines) if line.split()[:3] == [b"7", b"-5", b"4"])
    fields = lines[target].split()
    fields[4] = b"-114.0"
    lines[target] = b"  ".join(fields)
    path = tmp_path / "edited.cif_pets"
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(InputFileError) as err:
        read_pets(path)
    assert err.value.line == target + 1 and "negative sigma" in str(err.value) and "edited.cif_pets" in str(err.value)


# --- synthetic files ----------------------------------------------------------------------------
def test_synthetic_lf_and_crlf_identical(tmp_path):
    text = synthetic_text()
    lf = read_pets(write(tmp_path, text, "lf.cif_pets"))
    crlf = read_pets(write(tmp_path, text, "crlf.cif_pets", crlf=True))
    assert lf == crlf
    assert lf.frames["frame"].tolist() == [1, 2] and lf.reflections["I"].tolist() == [100.0, 50.0, 20.0]
    assert lf.rotation_axis_deg == 10.0 and lf.geometry == "continuous"


def test_synthetic_round_trip_with_extras(tmp_path):
    data = read_pets(write(tmp_path, synthetic_text()))
    reflections = data.reflections.assign(note=["a b", "c", "d"], weight=[0.1, 1e-300, 3.0])
    frames = data.frames.assign(alpha=[-1.0 / 3.0, 2.0 / 7.0])
    changed = PetsData(path=None, wavelength=data.wavelength, cell=data.cell, ub=data.ub / 3.0,
                       geometry="precession", precession_angle_deg=1.25, rotation_axis_deg=12.5,
                       mosaicity_deg=None, details={"custom key": "x;y", "Original file": r"D:\data\x.tif"},
                       frames=frames, reflections=reflections, space_group="P 1 21/n 1")
    again = read_pets(write_pets(changed, tmp_path / "out" / "synthetic.cif_pets"))
    assert again == changed
    assert again.details["Original file"] == r"D:\data\x.tif"
    assert again.details["precession angle"] == "1.25" and again.precession_angle_deg == 1.25
    ambiguous = PetsData(path=None, wavelength=1.0, cell=data.cell, ub=data.ub, geometry="continuous",
                         precession_angle_deg=None, rotation_axis_deg=None, mosaicity_deg=None,
                         details={"key": "x: y"}, frames=data.frames, reflections=data.reflections)
    with pytest.raises(ValueError, match="would not read back"):
        write_pets(ambiguous, tmp_path / "ambiguous.cif_pets")
    assert not (tmp_path / "ambiguous.cif_pets").exists()


def test_parse_details_groups():
    details = parse_details("a: 1\r\nVirtual frame settings: merged:  7\r\n   step:  5\r\nplain line\r\nb:\r\n")
    assert details == {"a": "1", "Virtual frame settings: merged": "7", "Virtual frame settings: step": "5",
                       "plain line": "", "b": ""}


def expect_error(path: Path, *fragments: str, line: int | None = None, **kwargs) -> InputFileError:
    with pytest.raises(InputFileError) as err:
        read_pets(path, **kwargs)
    message = str(err.value)
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message
    if line is not None:
        assert err.value.line == line, message
    return err.value


def test_unreadable_files(tmp_path):
    expect_error(tmp_path / "missing.cif_pets", "cannot read file")
    (tmp_path / "folder.cif_pets").mkdir()
    expect_error(tmp_path / "folder.cif_pets", "cannot read file")
    expect_error(write(tmp_path, "", "empty.cif_pets"), "no CIF data block")


def test_cif_syntax_error_line(tmp_path):
    text = synthetic_text().replace(";\n\n", "\n\n", 1)  # unterminated text field
    error = expect_error(write(tmp_path, text, crlf=True), "CIF syntax error")
    assert error.line is not None


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.replace("_diffrn_orient_matrix_UB_23 0.0\n", ""), ("required tag is missing", "_diffrn_orient_matrix_UB_23")),
        (lambda t: t.replace("_diffrn_radiation_wavelength 0.0251\n", ""), ("required tag is missing", "_diffrn_radiation_wavelength")),
        (lambda t: t.replace("_diffrn_radiation_wavelength 0.0251", "_diffrn_radiation_wavelength -1"), ("wavelength must be positive",)),
        (lambda t: t.replace("_diffrn_orient_matrix_UB_22 0.2", "_diffrn_orient_matrix_UB_22 zero"), ("'zero' is not a number", "_diffrn_orient_matrix_UB_22")),
        (lambda t: t[: t.index("loop_\n_refln")], ("no reflection (_refln) loop", "_refln_index_h")),
        (lambda t: t[: t.index("loop_\n_diffrn")] + t[t.index("loop_\n_refln"):], ("no frame (_diffrn_zone_axis) loop",)),
        (lambda t: t.replace("_refln_intensity_sigma\n", "").replace(" 10.0 1\n", " 1\n").replace(" 5.0 1\n", " 1\n").replace(" 4.0 2\n", " 2\n"),
         ("no column _refln_intensity_sigma",)),
    ],
)
def test_missing_or_bad_header(tmp_path, edit, fragments):
    expect_error(write(tmp_path, edit(synthetic_text())), *fragments)


def test_bad_values_are_located(tmp_path):
    base = synthetic_text()
    cases = [
        ("0 1 0 50.0 5.0 1", "0 1 0 abc 5.0 1", "'abc' is not a number", "_refln_intensity_meas"),
        ("0 1 0 50.0 5.0 1", "0 1.5 0 50.0 5.0 1", "'1.5' is not an integer", "_refln_index_k"),
        ("0 1 0 50.0 5.0 1", "0 1 0 50.0 nan 1", "not finite", "_refln_intensity_sigma"),
        ("0 1 0 50.0 5.0 1", "0 1 0 50.0 -5.0 1", "negative sigma", "_refln_intensity_sigma"),
        ("0 1 0 50.0 5.0 1", "0 1 0 50.0 5.0 7", "not in the frame loop: 7", "_refln_zone_axis_id"),
        ("2 0.5 0.0 0.0 10.0 1.0", "2 0.5 ? 0.0 10.0 1.0", "'?' is not a number", "_diffrn_zone_axis_alpha"),
        ("2 0.5 0.0 0.0 10.0 1.0", "1 0.5 0.0 0.0 10.0 1.0", "frame id 1 appears twice", "_diffrn_zone_axis_id"),
    ]
    for old, new, problem, tag in cases:
        text = base.replace(old, new)
        for crlf in (False, True):
            error = expect_error(write(tmp_path, text, crlf=crlf), problem, tag, line=line_of(text, new))
            assert error.tag == tag


def test_empty_frames_policy(tmp_path):
    text = synthetic_text().replace("1 1 0 20.0 4.0 2", "1 1 0 20.0 4.0 1")
    path = write(tmp_path, text)
    with pytest.warns(EmptyFramesWarning, match=r"x.cif_pets: 1 of 2 frames have no reflection: frame id\(s\) 2"):
        data = read_pets(path)
    assert data.empty_frames == (2,)
    expect_error(path, "1 of 2 frames have no reflection", empty_frames="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_pets(path, empty_frames="ignore")


def test_hkl_reader_errors(tmp_path):
    good = "   1   0   0      1.0      0.1     3     0\r\n  -1   2   0      2.0      0.2     4     0\r\n"
    table = read_hkl(write(tmp_path, good, "a.hkl"))
    assert table["frame"].tolist() == [3, 4] and table["I"].tolist() == [1.0, 2.0]
    for bad, problem, line in [
        (good + "1 2 3\n", "expected 7 columns", 3),
        (good.replace("2.0", "nan"), "not a finite number", 2),
        (good.replace("0.2", "-0.2"), "negative sigma", 2),
        (good.replace("  -1", " x"), "not an integer", 2),
        ("", "no reflections", None),
    ]:
        with pytest.raises(InputFileError) as err:
            read_hkl(write(tmp_path, bad, "b.hkl"))
        assert "b.hkl" in str(err.value) and problem in str(err.value) and err.value.line == line
