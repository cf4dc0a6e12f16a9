"""Readers and a writer for PETS2 output: ``.cif_pets`` / ``_dyn.cif_pets`` and ``.hkl`` lists.

A ``.cif_pets`` file is CIF syntax (one ``data_pets`` block) holding

* the cell (``_cell_*``), the wavelength and the 3x3 UB matrix (``_diffrn_orient_matrix_UB_ij``),
* a free-text ``_diffrn_measurement_details`` field of ``key: value`` lines (geometry, mosaicity,
  rotation-axis position, virtual-frame settings...),
* one ``_diffrn_zone_axis_*`` loop with a row per (virtual) frame: id, zone axis u v w,
  ``precession_angle``, goniometer angles alpha beta omega (degrees) and a scale,
* one ``_refln_*`` loop: h k l, intensity, sigma and the id of the frame the intensity belongs to.

For continuous-rotation data PETS writes into the ``precession_angle`` column the *half* width
(degrees) of the angular range a frame covers (glycine: 0.18 per experimental frame, 1.26 for a
virtual frame of 7 merged frames; quartz: 1.0 for 2 merged 1-degree frames). It is kept as the
frame column ``precession_angle`` and exposed as :attr:`PetsData.frame_half_widths_deg`.

Frames without reflections occur in real files (10 of the 31 virtual frames of the glycine
``_dyn`` file, 21 of 159 frames of the kinematic one). They are therefore *not* an error: the reader
warns with :class:`EmptyFramesWarning` naming the file and the frame ids (``empty_frames="error"``
turns that into an :class:`~edwidgets.errors.InputFileError`, ``"ignore"`` silences it), and
:attr:`PetsData.empty_frames` lists them. Reflections referring to a frame id that is not in the
frame loop are an error.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gemmi
import numpy as np
import pandas as pd

from edwidgets.errors import InputFileError
from edwidgets.io_utils import atomic_write_text

__all__ = [
    "EmptyFramesWarning",
    "PetsData",
    "read_hkl",
    "read_pets",
    "write_pets",
]

FRAME_PREFIX = "_diffrn_zone_axis_"
REFLECTION_PREFIX = "_refln_"
# PETS loop tag suffix -> DataFrame column name (everything else keeps its suffix as name).
FRAME_COLUMNS = {"id": "frame"}
REFLECTION_COLUMNS = {
    "index_h": "h",
    "index_k": "k",
    "index_l": "l",
    "intensity_meas": "I",
    "intensity_sigma": "sigma",
    "zone_axis_id": "frame",
}
REQUIRED_FRAME_COLUMNS = ("frame", "alpha", "beta", "omega")
REQUIRED_REFLECTION_COLUMNS = ("h", "k", "l", "I", "sigma", "frame")
INTEGER_COLUMNS = frozenset({"frame", "h", "k", "l"})
CELL_TAGS = (
    "_cell_length_a",
    "_cell_length_b",
    "_cell_length_c",
    "_cell_angle_alpha",
    "_cell_angle_beta",
    "_cell_angle_gamma",
)
WAVELENGTH_TAG = "_diffrn_radiation_wavelength"
UB_TAGS = tuple(f"_diffrn_orient_matrix_UB_{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3))
DETAILS_TAG = "_diffrn_measurement_details"
SPACE_GROUP_TAGS = ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M")

GEOMETRY_KEY = "data collection geometry"
ROTATION_AXIS_KEY = "rotation axis position"
MOSAICITY_KEY = "mosaicity"
PRECESSION_KEY = "precession angle"
GEOMETRY_SPELLING = {"continuous": "continuous rotation", "precession": "precession", "stepwise": "stepwise"}

_INTEGER_TEXT = re.compile(r"[+-]?\d+")
_STANDARD_UNCERTAINTY = re.compile(r"\(\d+\)$")
_DETAILS_SEPARATOR = re.compile(r":(?:\s+|$)")


class EmptyFramesWarning(UserWarning):
    """A PETS file lists frames that have no reflection."""


@dataclass(frozen=True, eq=False)
class PetsData:
    """Everything of a PETS2 ``.cif_pets`` file that edwidgets uses (angles in degrees, lengths in Å).

    ``frames`` has one row per (virtual) frame: ``frame`` (int id as in the file), ``alpha``,
    ``beta``, ``omega`` (deg), ``scale`` and the other ``_diffrn_zone_axis`` columns (``u v w``,
    ``precession_angle``). ``reflections`` has ``h k l`` (int), ``I``, ``sigma`` (float), ``frame``
    (int) plus any other ``_refln`` columns. ``ub`` maps integer hkl to PETS's Cartesian reciprocal
    frame (Å⁻¹, no 2π) at alpha = beta = omega = 0; see :mod:`edwidgets.experiment.geometry` for
    how that frame relates to the simulator's lab frame.

    Equality (``==``) compares every field except ``path`` and ``comments`` exactly.
    """

    path: Path | None
    wavelength: float
    cell: tuple[float, ...]
    ub: np.ndarray
    geometry: str
    precession_angle_deg: float | None
    rotation_axis_deg: float | None
    mosaicity_deg: float | None
    details: dict[str, str]
    frames: pd.DataFrame
    reflections: pd.DataFrame
    space_group: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    comments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ub = np.array(self.ub, dtype=np.float64)
        if ub.shape != (3, 3):
            raise ValueError(f"PetsData.ub must be 3x3, got shape {ub.shape}")
        ub.flags.writeable = False
        object.__setattr__(self, "ub", ub)
        object.__setattr__(self, "cell", tuple(float(x) for x in self.cell))
        object.__setattr__(self, "details", _synced_details(self))
        if len(self.cell) != 6:
            raise ValueError(f"PetsData.cell needs 6 numbers (a b c alpha beta gamma), got {len(self.cell)}")

    # -- convenience -------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def frame_ids(self) -> np.ndarray:
        """Frame ids in file order."""
        return self.frames["frame"].to_numpy()

    @property
    def hkl(self) -> np.ndarray:
        """[n_reflections, 3] integer Miller indices."""
        return self.reflections[["h", "k", "l"]].to_numpy(dtype=np.int64)

    @property
    def empty_frames(self) -> tuple[int, ...]:
        """Ids of frames that have no reflection."""
        used = set(self.reflections["frame"].tolist())
        return tuple(int(f) for f in self.frame_ids if int(f) not in used)

    @property
    def frame_half_widths_deg(self) -> np.ndarray | None:
        """Half angular range of each frame (deg) for continuous rotation (PETS's precession_angle column)."""
        if self.geometry != "continuous" or "precession_angle" not in self.frames:
            return None
        return self.frames["precession_angle"].to_numpy(dtype=np.float64)

    def frame_reflections(self, frame: int) -> pd.DataFrame:
        """The reflection rows of one frame id."""
        return self.reflections[self.reflections["frame"] == frame]

    # -- comparison --------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PetsData):
            return NotImplemented
        return (
            self.wavelength == other.wavelength
            and self.cell == other.cell
            and np.array_equal(self.ub, other.ub)
            and self.geometry == other.geometry
            and _same_optional(self.precession_angle_deg, other.precession_angle_deg)
            and _same_optional(self.rotation_axis_deg, other.rotation_axis_deg)
            and _same_optional(self.mosaicity_deg, other.mosaicity_deg)
            and self.details == other.details
            and self.space_group == other.space_group
            and self.extra == other.extra
            and _same_frame(self.frames, other.frames)
            and _same_frame(self.reflections, other.reflections)
        )

    __hash__ = None  # type: ignore[assignment]


def _synced_details(data: PetsData) -> dict[str, str]:
    """The details dict with geometry, rotation axis, mosaicity and precession angle added or
    corrected so that it agrees with the typed fields (which win); text that already agrees is kept."""
    details = dict(data.details)
    if data.geometry != "unknown" and _geometry_from_details(details) != data.geometry:
        details[_details_key(details, GEOMETRY_KEY)] = GEOMETRY_SPELLING.get(data.geometry, data.geometry.replace("_", " "))
    numbers = [(ROTATION_AXIS_KEY, data.rotation_axis_deg), (MOSAICITY_KEY, data.mosaicity_deg)]
    if data.geometry == "precession":
        numbers.append((PRECESSION_KEY, data.precession_angle_deg))
    for key, value in numbers:
        if value is not None and _details_float(details, key, None) != value:
            details[_details_key(details, key)] = _fmt(value)
    return details


def _same_optional(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a == b)


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return list(a.columns) == list(b.columns) and a.reset_index(drop=True).equals(b.reset_index(drop=True))


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_pets(
    path: str | Path,
    *,
    empty_frames: Literal["warn", "error", "ignore"] = "warn",
) -> PetsData:
    """Read a PETS2 ``.cif_pets`` or ``_dyn.cif_pets`` file (LF or CRLF line endings).

    Raises :class:`~edwidgets.errors.InputFileError` naming the file, the line or tag and the
    problem for: an unreadable file or CIF syntax error, a missing cell / wavelength / UB tag, a
    missing frame or reflection loop or column, non-numeric or non-finite numbers, non-integer
    indices or frame ids, duplicate frame ids, negative sigma, reflections whose frame id is not in
    the frame loop, and a file without reflections. Frames without reflections are reported with
    :class:`EmptyFramesWarning` (see ``empty_frames``).
    """
    path = Path(path)
    text = _read_text(path)
    try:
        document = gemmi.cif.read_string(text)
    except (ValueError, RuntimeError) as exc:
        message = str(exc)
        match = re.search(r":(\d+):", message)
        problem = re.sub(r"^[^:]*:\d+:\S*\s*", "", message) or message
        raise InputFileError(path, f"CIF syntax error: {problem}", line=int(match.group(1)) if match else None) from None
    if len(document) == 0:
        raise InputFileError(path, "no CIF data block (expected 'data_pets' followed by PETS tags)")
    block = next((b for b in document if b.find_value(WAVELENGTH_TAG) is not None), document[0])
    return _parse_block(block, path, text.splitlines(), empty_frames)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read file ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # PETS runs on Windows; its comment lines may hold Windows-1252 paths.
        return raw.decode("latin-1")


def _parse_block(block: gemmi.cif.Block, path: Path, lines: list[str], empty_policy: str) -> PetsData:
    consumed: set[str] = set()

    def number(tag: str) -> float:
        raw = block.find_value(tag)
        line = _pair_line(block, tag)
        if raw is None:
            raise InputFileError(path, "required tag is missing", tag=tag)
        consumed.add(tag.lower())
        value = _to_float(raw)
        if value is None:
            raise InputFileError(path, f"value {raw!r} is not a number", line=line, tag=tag)
        if not math.isfinite(value):
            raise InputFileError(path, f"value {raw!r} is not finite", line=line, tag=tag)
        return value

    cell = tuple(number(tag) for tag in CELL_TAGS)
    if min(cell[:3]) <= 0 or not all(0 < angle < 180 for angle in cell[3:]):
        raise InputFileError(path, f"impossible cell {cell}", tag="_cell_*")
    wavelength = number(WAVELENGTH_TAG)
    if wavelength <= 0:
        raise InputFileError(path, f"wavelength must be positive, got {wavelength}", tag=WAVELENGTH_TAG,
                             line=_pair_line(block, WAVELENGTH_TAG))
    ub = np.array([number(tag) for tag in UB_TAGS]).reshape(3, 3)
    if abs(np.linalg.det(ub)) < 1e-12:
        raise InputFileError(path, "UB matrix is singular", tag="_diffrn_orient_matrix_UB_*")

    details_raw = block.find_value(DETAILS_TAG)
    details: dict[str, str] = {}
    if details_raw is not None:
        consumed.add(DETAILS_TAG.lower())
        details = parse_details(gemmi.cif.as_string(details_raw))

    space_group = None
    for tag in SPACE_GROUP_TAGS:
        raw = block.find_value(tag)
        if raw is not None:
            consumed.add(tag.lower())
            if space_group is None and raw not in ("?", "."):
                space_group = gemmi.cif.as_string(raw).strip()

    frames = _read_loop(block, path, lines, FRAME_PREFIX, FRAME_COLUMNS, REQUIRED_FRAME_COLUMNS, "frame (_diffrn_zone_axis)")
    if "scale" not in frames:
        frames["scale"] = 1.0
    reflections = _read_loop(block, path, lines, REFLECTION_PREFIX, REFLECTION_COLUMNS, REQUIRED_REFLECTION_COLUMNS, "reflection (_refln)")

    frame_line = _loop_value_lines(block, FRAME_PREFIX + "id", lines)
    duplicated = frames["frame"].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise InputFileError(path, f"frame id {int(frames['frame'].iloc[row])} appears twice in the frame loop",
                             line=_row_line(frame_line, row), tag=FRAME_PREFIX + "id")
    if len(reflections) == 0:
        raise InputFileError(path, "the _refln loop has no reflections", tag=REFLECTION_PREFIX + "index_h")
    if len(frames) == 0:
        raise InputFileError(path, "the _diffrn_zone_axis loop has no frames", tag=FRAME_PREFIX + "id")

    refl_line = _loop_value_lines(block, REFLECTION_PREFIX + "index_h", lines)
    sigma = reflections["sigma"].to_numpy()
    if (sigma < 0).any():
        row = int(np.flatnonzero(sigma < 0)[0])
        raise InputFileError(path, f"negative sigma {sigma[row]} ({int((sigma < 0).sum())} reflection(s) with sigma < 0)",
                             line=_row_line(refl_line, row), tag=REFLECTION_PREFIX + "intensity_sigma")
    known = set(frames["frame"].tolist())
    unknown = ~reflections["frame"].isin(known).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        missing = sorted(set(reflections["frame"].to_numpy()[unknown].tolist()))
        raise InputFileError(
            path,
            f"{int(unknown.sum())} reflection(s) refer to frame id(s) not in the frame loop: {_id_ranges(missing)}",
            line=_row_line(refl_line, row), tag=REFLECTION_PREFIX + "zone_axis_id")

    used = set(reflections["frame"].tolist())
    empty = [int(f) for f in frames["frame"] if int(f) not in used]
    if empty and empty_policy != "ignore":
        problem = f"{len(empty)} of {len(frames)} frames have no reflection: frame id(s) {_id_ranges(empty)}"
        if empty_policy == "error":
            raise InputFileError(path, problem, tag=FRAME_PREFIX + "id")
        warnings.warn(f"{path}: {problem}", EmptyFramesWarning, stacklevel=3)

    geometry = _geometry_from_details(details)
    rotation_axis = _details_float(details, ROTATION_AXIS_KEY, path)
    mosaicity = _details_float(details, MOSAICITY_KEY, path)
    precession = None
    if geometry == "precession":
        precession = _details_float(details, PRECESSION_KEY, path)
        if precession is None and "precession_angle" in frames:
            precession = float(np.median(frames["precession_angle"].to_numpy()))

    extra: dict[str, str] = {}
    for item in block:
        if item.pair is not None and item.pair[0].lower() not in consumed:
            extra[item.pair[0]] = item.pair[1]
    comments = tuple(line.rstrip("\r") for line in lines if line.lstrip().startswith("#"))
    return PetsData(
        path=path, wavelength=wavelength, cell=cell, ub=ub, geometry=geometry,
        precession_angle_deg=precession, rotation_axis_deg=rotation_axis, mosaicity_deg=mosaicity,
        details=details, frames=frames, reflections=reflections, space_group=space_group,
        extra=extra, comments=comments,
    )


def _read_loop(block: gemmi.cif.Block, path: Path, lines: list[str], prefix: str, renames: dict[str, str],
               required: tuple[str, ...], what: str) -> pd.DataFrame:
    inverse = {v: k for k, v in renames.items()}
    first_tag = prefix + inverse.get(required[0], required[0])
    loop_item = block.find_loop_item(first_tag)
    loop = loop_item.loop if loop_item is not None else None
    if loop is None:
        if block.find_value(first_tag) is not None:
            raise InputFileError(path, f"{what} data must be a loop_ (found a single value)", tag=first_tag)
        raise InputFileError(path, f"no {what} loop: tag {first_tag} not found", tag=first_tag)
    tags = list(loop.tags)
    names: list[str] = []
    for tag in tags:
        if not tag.lower().startswith(prefix.lower()):
            raise InputFileError(path, f"unexpected tag {tag} in the {what} loop", tag=tag)
        suffix = tag[len(prefix):]
        names.append(renames.get(suffix.lower(), suffix))
    for name in required:
        if name not in names:
            raise InputFileError(path, f"the {what} loop has no column {prefix + inverse.get(name, name)}",
                                 tag=prefix + inverse.get(name, name))
    width, length = loop.width(), loop.length()
    values = np.array(list(loop.values), dtype=object).reshape(length, width) if length else np.empty((0, width), dtype=object)
    def fail(row: int, col: int, problem: str) -> None:
        line = _row_line(_loop_value_lines(block, tags[0], lines), row, col)
        raise InputFileError(path, f"{what} row {row + 1}: {problem}", line=line, tag=tags[col])

    data: dict[str, Any] = {}
    for col, name in enumerate(names):
        raw = values[:, col]
        if name in INTEGER_COLUMNS:
            ok = np.array([bool(_INTEGER_TEXT.fullmatch(v)) for v in raw], dtype=bool)
            if not ok.all():
                row = int(np.flatnonzero(~ok)[0])
                fail(row, col, f"value {raw[row]!r} is not an integer")
            data[name] = raw.astype(np.int64) if length else np.empty(0, dtype=np.int64)
            continue
        parsed = [_to_float(v) for v in raw]
        bad = [i for i, v in enumerate(parsed) if v is None]
        if bad and name not in required and len(bad) == len(parsed):
            data[name] = [gemmi.cif.as_string(v) for v in raw]  # a text column PETS does not write today
            continue
        if bad:
            fail(bad[0], col, f"value {raw[bad[0]]!r} is not a number")
        array = np.array(parsed, dtype=np.float64)
        finite = np.isfinite(array)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            fail(row, col, f"value {raw[row]!r} is not finite (NaN or infinity)")
        data[name] = array
    return pd.DataFrame(data, columns=names)


def _to_float(raw: str) -> float | None:
    text = _STANDARD_UNCERTAINTY.sub("", raw.strip())
    try:
        return float(text)
    except ValueError:
        return None


def _pair_line(block: gemmi.cif.Block, tag: str) -> int | None:
    for item in block:
        if item.pair is not None and item.pair[0].lower() == tag.lower():
            return int(item.line_number)
    return None


def _tokens(line: str) -> list[str]:
    tokens = []
    for token in re.findall(r"'[^']*'(?=\s|$)|\"[^\"]*\"(?=\s|$)|\S+", line):
        if token.startswith("#"):
            break
        tokens.append(token)
    return tokens


def _loop_value_lines(block: gemmi.cif.Block, tag: str, lines: list[str]) -> tuple[list[int], int] | None:
    """1-based line number of every value of the loop holding ``tag``, and the loop width.

    Only used to put line numbers into error messages, so it gives up (None) on anything unusual.
    """
    item = block.find_loop_item(tag)
    if item is None or item.loop is None:
        return None
    loop = item.loop
    skip = 1 + len(loop.tags)  # 'loop_' and the tags
    found: list[int] = []
    total = loop.width() * loop.length()
    for number in range(int(item.line_number), len(lines) + 1):
        line = lines[number - 1]
        if line.startswith(";"):
            return None
        for _ in _tokens(line):
            if skip:
                skip -= 1
            else:
                found.append(number)
        if len(found) >= total:
            break
    return found, loop.width()


def _row_line(value_lines: tuple[list[int], int] | None, row: int, col: int = 0) -> int | None:
    """Line of the value in ``row``/``col`` of a loop (from :func:`_loop_value_lines`)."""
    if value_lines is None:
        return None
    found, width = value_lines
    index = row * width + col
    return found[index] if 0 <= index < len(found) else None


def _id_ranges(ids: list[int]) -> str:
    """'1-3, 7, 9-10' for [1, 2, 3, 7, 9, 10]."""
    ids = sorted(ids)
    parts: list[str] = []
    start = prev = None
    for i in ids:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def parse_details(text: str) -> dict[str, str]:
    """Parse PETS's ``_diffrn_measurement_details`` text into ``{key: value}``.

    Lines are ``key: value``; a line ``group: key: value`` (e.g. ``Virtual frame settings: number
    of merged frames: 7``) gives the key ``"group: key"``, and the indented lines under it belong
    to the same group. A colon not followed by a blank (``D:\\path``) does not split.
    """
    details: dict[str, str] = {}
    group: str | None = None
    for raw in text.replace("\r", "").split("\n"):
        if not raw.strip():
            continue
        indented = raw[:1].isspace()
        parts = _DETAILS_SEPARATOR.split(raw.strip(), maxsplit=2)
        if len(parts) == 3:
            group = parts[0].strip()
            key, value = f"{group}: {parts[1].strip()}", parts[2].strip()
        elif len(parts) == 2:
            key, value = parts[0].strip(), parts[1].strip()
            if indented and group is not None:
                key = f"{group}: {key}"
            else:
                group = None
        else:
            key, value, group = raw.strip(), "", None
        details[key] = value
    return details


def _details_lookup(details: dict[str, str], key: str) -> str | None:
    for k, v in details.items():
        if k.strip().lower() == key:
            return v
    return None


def _details_float(details: dict[str, str], key: str, path: Path | None) -> float | None:
    raw = _details_lookup(details, key)
    if raw is None or raw == "":
        return None
    value = _to_float(raw.split()[0])
    if value is None or not math.isfinite(value):
        raise InputFileError(path, f"'{key}: {raw}' is not a number", tag=DETAILS_TAG)
    return value


def _geometry_from_details(details: dict[str, str]) -> str:
    raw = _details_lookup(details, GEOMETRY_KEY)
    if raw is None or not raw.strip():
        return "unknown"
    text = raw.strip().lower()
    if "continuous" in text:
        return "continuous"
    if "precession" in text:
        return "precession"
    if "step" in text:
        return "stepwise"
    return re.sub(r"\s+", "_", text)


# ------------------------------------------------------------------------------------------------
# .hkl
# ------------------------------------------------------------------------------------------------
HKL_COLUMNS = ("h", "k", "l", "I", "sigma", "frame", "flag")


def read_hkl(path: str | Path) -> pd.DataFrame:
    """Read a PETS ``.hkl`` list: whitespace-separated ``h k l I sigma [frame [flag]]`` per line.

    ``frame`` is the frame id of the matching ``.cif_pets`` file; ``flag`` is PETS's last integer
    column (0 for all but one reflection in the glycine example; meaning not documented here).
    Columns beyond the seventh are kept as ``extra1, extra2...``. Raises
    :class:`~edwidgets.errors.InputFileError` with the line number on malformed lines, NaN, or
    negative sigma.
    """
    path = Path(path)
    text = _read_text(path)
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    width = None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if width is None:
            width = len(fields)
            if width < 5:
                raise InputFileError(path, f"expected at least 5 columns (h k l I sigma), found {width}", line=number)
        elif len(fields) != width:
            raise InputFileError(path, f"expected {width} columns like the first data line, found {len(fields)}", line=number)
        rows.append(fields)
        line_numbers.append(number)
    if not rows:
        raise InputFileError(path, "no reflections in the file")
    assert width is not None
    names = list(HKL_COLUMNS[:width]) + [f"extra{i}" for i in range(1, width - len(HKL_COLUMNS) + 1)]
    table = np.array(rows, dtype=object)
    data: dict[str, np.ndarray] = {}
    for col, name in enumerate(names):
        raw = table[:, col]
        if name in ("h", "k", "l", "frame", "flag"):
            ok = np.array([bool(_INTEGER_TEXT.fullmatch(v)) for v in raw])
            if not ok.all():
                row = int(np.flatnonzero(~ok)[0])
                raise InputFileError(path, f"column {name}: {raw[row]!r} is not an integer", line=line_numbers[row])
            data[name] = raw.astype(np.int64)
        else:
            parsed = [_to_float(v) for v in raw]
            bad = [i for i, v in enumerate(parsed) if v is None or not math.isfinite(v)]
            if bad:
                raise InputFileError(path, f"column {name}: {raw[bad[0]]!r} is not a finite number",
                                     line=line_numbers[bad[0]])
            data[name] = np.array(parsed, dtype=np.float64)
    negative = data["sigma"] < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise InputFileError(path, f"negative sigma {data['sigma'][row]}", line=line_numbers[row])
    return pd.DataFrame(data, columns=names)


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def write_pets(data: PetsData, path: str | Path) -> Path:
    """Write ``data`` as a ``.cif_pets`` file (atomically); ``read_pets`` gives back an equal object.

    Numbers are written with Python's shortest round-trip representation, so the round trip is
    exact. (``PetsData`` keeps its details text in line with ``geometry``, ``rotation_axis_deg``,
    ``mosaicity_deg`` and ``precession_angle_deg``, so those survive too.)
    """
    path = Path(path)
    details = data.details
    out: list[str] = ["data_pets"]
    for tag, value in zip(CELL_TAGS, data.cell):
        out.append(f"{tag} {_fmt(value)}")
    out.append(f"{WAVELENGTH_TAG} {_fmt(data.wavelength)}")
    for tag, value in zip(UB_TAGS, np.asarray(data.ub, dtype=np.float64).ravel()):
        out.append(f"{tag} {_fmt(float(value))}")
    if data.space_group is not None:
        out.append(f"{SPACE_GROUP_TAGS[0]} {gemmi.cif.quote(data.space_group)}")
    for tag, value in data.extra.items():
        out += [tag, value] if value.startswith(";") else [f"{tag} {value}"]
    if details:
        out += [DETAILS_TAG, ";"]
        for key, value in details.items():
            line = f"{key}: {value}".rstrip()
            if "\n" in line or "\r" in line or line.startswith(";") or parse_details(line) != {key: value}:
                raise ValueError(f"details entry {key!r}: {value!r} would not read back as written "
                                 "(line breaks, a leading ';' or a ': ' inside the value)")
            out.append(line)
        out.append(";")
    out.append("")
    out += [c for c in data.comments]
    out += _loop_lines(data.frames, FRAME_PREFIX, FRAME_COLUMNS)
    out.append("")
    out += _loop_lines(data.reflections, REFLECTION_PREFIX, REFLECTION_COLUMNS)
    out.append("")
    return atomic_write_text(path, "\n".join(out))


def _details_key(details: dict[str, str], key: str) -> str:
    return next((k for k in details if k.strip().lower() == key), key)


def _fmt(value: float) -> str:
    return repr(float(value))  # shortest text that reads back to the same float


def _loop_lines(table: pd.DataFrame, prefix: str, renames: dict[str, str]) -> list[str]:
    inverse = {v: k for k, v in renames.items()}
    lines = ["loop_"] + [prefix + inverse.get(str(name), str(name)) for name in table.columns]
    columns = []
    for name in table.columns:
        series = table[name]
        if pd.api.types.is_integer_dtype(series):
            columns.append([str(int(v)) for v in series])
        elif pd.api.types.is_float_dtype(series):
            columns.append([_fmt(float(v)) for v in series])
        else:
            columns.append([gemmi.cif.quote(str(v)) for v in series])
    lines += [" ".join(row) for row in zip(*columns)]
    return lines

