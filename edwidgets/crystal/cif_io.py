"""Reading and writing small-molecule CIFs through gemmi."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import gemmi

from edwidgets.errors import CrystalError, InputFileError

if TYPE_CHECKING:
    from edwidgets.crystal.structure import Crystal

_CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
              "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
_OPS_TAGS = ("_space_group_symop_operation_xyz", "_symmetry_equiv_pos_as_xyz",
             "_space_group_symop.operation_xyz", "_symmetry_equiv.pos_as_xyz")
_HALL_TAGS = ("_space_group_name_Hall", "_symmetry_space_group_name_Hall", "_space_group.name_Hall")
_HM_TAGS = ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M", "_space_group.name_H-M_alt")


def _pick_block(doc: gemmi.cif.Document, block: str | int | None, path: Path) -> gemmi.cif.Block:
    blocks = list(doc)
    if not blocks:
        raise InputFileError(path, "the CIF has no data block")
    if block is None:
        with_atoms = [b for b in blocks if b.find_values("_atom_site_fract_x")]
        if not with_atoms:
            raise InputFileError(path, "no data block has atom sites (_atom_site_fract_x)",
                                 tag="_atom_site_fract_x")
        return with_atoms[0]
    if isinstance(block, int):
        if not -len(blocks) <= block < len(blocks):
            raise InputFileError(path, f"block index {block} out of range: the file has {len(blocks)} blocks")
        return blocks[block]
    found = doc.find_block(block)
    if found is None:
        names = ", ".join(b.name for b in blocks)
        raise InputFileError(path, f"no data block named {block!r} (blocks: {names})")
    return found


def _first_value(block: gemmi.cif.Block, tags) -> tuple[str, str] | None:
    for tag in tags:
        value = block.find_value(tag)
        if value is not None and value not in ("?", "."):
            return tag, gemmi.cif.as_string(value).strip()
    return None


def _read_cell(block: gemmi.cif.Block, path: Path) -> tuple[float, ...]:
    cell = []
    for tag in _CELL_TAGS:
        raw = block.find_value(tag)
        if raw is None:
            raise InputFileError(path, "missing unit-cell parameter", tag=tag)
        value = gemmi.cif.as_number(raw)
        if not math.isfinite(value):
            raise InputFileError(path, f"unit-cell parameter is not a finite number: {raw!r}", tag=tag)
        cell.append(value)
    return tuple(cell)


def _read_space_group(block: gemmi.cif.Block, path: Path):
    """The file's own operations if listed; otherwise its Hall symbol; otherwise its H-M symbol."""
    from edwidgets.crystal.symmetry import check_group_closed, tabulated_or_ops

    for tag in _OPS_TAGS:
        values = block.find_values(tag)
        if values is not None and len(values) > 0:
            ops = []
            for i, raw in enumerate(values):
                triplet = gemmi.cif.as_string(raw)
                try:
                    ops.append(gemmi.Op(triplet))
                except Exception as exc:  # gemmi raises RuntimeError/ValueError for bad triplets
                    raise InputFileError(path, f"cannot parse symmetry operation {triplet!r} ({exc})",
                                         tag=tag) from None
            group = gemmi.GroupOps(ops)
            try:
                check_group_closed(group)
            except CrystalError as exc:
                raise InputFileError(path, str(exc), tag=tag) from None
            return tabulated_or_ops(group)
    hall = _first_value(block, _HALL_TAGS)
    if hall is not None:
        tag, symbol = hall
        try:
            return tabulated_or_ops(gemmi.symops_from_hall(symbol))
        except Exception as exc:
            raise InputFileError(path, f"cannot interpret Hall symbol {symbol!r} ({exc})", tag=tag) from None
    hm = _first_value(block, _HM_TAGS)
    if hm is not None:
        tag, symbol = hm
        sg = gemmi.find_spacegroup_by_name(symbol)
        if sg is None:
            raise InputFileError(path, f"unknown space-group symbol {symbol!r}", tag=tag)
        return sg
    raise InputFileError(path, "missing symmetry: no symmetry operations (_space_group_symop_operation_xyz "
                               "or _symmetry_equiv_pos_as_xyz), Hall symbol or H-M symbol")


def read_cif(cls, path, block: str | int | None = None) -> "Crystal":
    from edwidgets.crystal.structure import Site

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        doc = gemmi.cif.read(str(path))
    except Exception as exc:  # gemmi raises RuntimeError with the parser's line number
        raise InputFileError(path, f"not a readable CIF ({exc})") from None
    blk = _pick_block(doc, block, path)
    cell = _read_cell(blk, path)
    space_group = _read_space_group(blk, path)
    try:
        small = gemmi.make_small_structure_from_block(blk)
    except Exception as exc:
        raise InputFileError(path, f"cannot read the atom sites ({exc})") from None
    if len(small.sites) == 0:
        raise InputFileError(path, "no atoms in _atom_site_ loop", tag="_atom_site_label")
    sites = []
    for s in small.sites:
        symbol = s.type_symbol or s.label
        if s.element.atomic_number == 0:
            raise InputFileError(path, f"unknown element {symbol!r} for atom {s.label!r}",
                                 tag="_atom_site_type_symbol")
        frac = (s.fract.x, s.fract.y, s.fract.z)
        if not all(math.isfinite(v) for v in frac):
            raise InputFileError(path, f"atom {s.label!r} has a missing or non-finite coordinate {frac}",
                                 tag="_atom_site_fract_x")
        if not math.isfinite(s.occ):
            raise InputFileError(path, f"atom {s.label!r} has a non-finite occupancy", tag="_atom_site_occupancy")
        u_aniso = None
        if s.aniso.nonzero():
            a = s.aniso
            u_aniso = (a.u11, a.u22, a.u33, a.u12, a.u13, a.u23)
            if not all(math.isfinite(v) for v in u_aniso):
                raise InputFileError(path, f"atom {s.label!r} has non-finite anisotropic U",
                                     tag="_atom_site_aniso_U_11")
        u_iso = s.u_iso
        if not math.isfinite(u_iso):
            if u_aniso is None:
                raise InputFileError(path, f"atom {s.label!r} has a non-finite U_iso",
                                     tag="_atom_site_U_iso_or_equiv")
            u_iso = 0.0  # recomputed from the anisotropic U
        sites.append(Site(label=s.label, element=s.element.name, frac=frac, occupancy=s.occ,
                          u_iso=u_iso, u_aniso=u_aniso))
    try:
        return cls(cell, space_group, sites, name=blk.name)
    except CrystalError as exc:
        raise InputFileError(path, str(exc)) from None


def _fmt(value: float) -> str:
    text = repr(float(value))
    return "0" if text in ("0.0", "-0.0") else text


def crystal_to_cif_string(crystal: "Crystal") -> str:
    from edwidgets.crystal.symmetry import group_ops, op_triplets

    name = "".join(ch if (ch.isalnum() or ch in "_-.") else "_" for ch in crystal.name) or "edwidgets"
    q = gemmi.cif.quote
    lines = [f"data_{name}", "_audit_creation_method 'edwidgets.crystal'"]
    for tag, value in zip(_CELL_TAGS, crystal.cell):
        lines.append(f"{tag} {_fmt(value)}")
    lines.append(f"_cell_volume {crystal.volume:.6f}")
    sg = crystal.space_group
    if isinstance(sg, gemmi.SpaceGroup):
        lines.append(f"_space_group_name_H-M_alt {q(sg.xhm())}")
        lines.append(f"_space_group_name_Hall {q(sg.hall)}")
        lines.append(f"_space_group_IT_number {sg.number}")
    lines += ["loop_", "_space_group_symop_id", "_space_group_symop_operation_xyz"]
    for i, triplet in enumerate(op_triplets(group_ops(sg)), start=1):
        lines.append(f"{i} {q(triplet)}")
    lines += ["loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x",
              "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy",
              "_atom_site_U_iso_or_equiv", "_atom_site_adp_type"]
    for s in crystal.sites:
        adp_type = "Uiso" if s.u_aniso is None else "Uani"
        lines.append(" ".join([q(s.label), s.element, *(_fmt(v) for v in s.frac), _fmt(s.occupancy),
                               _fmt(s.u_iso), adp_type]))
    aniso = [s for s in crystal.sites if s.u_aniso is not None]
    if aniso:
        lines += ["loop_", "_atom_site_aniso_label", "_atom_site_aniso_U_11", "_atom_site_aniso_U_22",
                  "_atom_site_aniso_U_33", "_atom_site_aniso_U_12", "_atom_site_aniso_U_13",
                  "_atom_site_aniso_U_23"]
        for s in aniso:
            lines.append(" ".join([q(s.label), *(_fmt(v) for v in s.u_aniso)]))
    return "\n".join(lines) + "\n"


__all__ = ["read_cif", "crystal_to_cif_string"]
