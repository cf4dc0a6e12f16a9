"""Command line: ``edwidgets simulate | demo | refine`` (also ``python -m edwidgets``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .errors import EdwidgetsError


def load_crystal(spec: str):
    """A CIF path, or the name of a structure shipped with edwidgets (e.g. quartz_P3221)."""
    from .crystal import Crystal, available_structures, load_structure

    path = Path(spec)
    if path.suffix.lower() == ".cif" or path.exists():
        if not path.exists():
            raise EdwidgetsError(f"{path}: no such CIF file")
        return Crystal.from_cif(path)
    if spec not in available_structures():
        raise EdwidgetsError(f"{spec!r} is neither a CIF file nor a shipped structure ({', '.join(available_structures())})")
    return load_structure(spec)


def cmd_simulate(args) -> int:
    from . import kinematic_pattern, simulate_pattern
    from .io_utils import atomic_write_text
    from .plots import plot_curves, plot_pattern

    crystal = load_crystal(args.structure)
    out = Path(args.out)
    common = dict(zone_axis=tuple(args.zone_axis), voltage_kv=args.voltage, g_max=args.g_max, sg_max=args.sg_max)
    dyn = simulate_pattern(crystal, thickness=args.thickness, absorption=args.absorption, **common)
    kin = kinematic_pattern(crystal, thickness=args.thickness, **common)
    table = dyn.merge(kin[["h", "k", "l", "intensity"]], on=["h", "k", "l"], suffixes=("", "_kinematic"))
    atomic_write_text(out / "pattern.csv", table.to_csv(index=False))
    title = f"{crystal.name or args.structure} [{' '.join(map(str, args.zone_axis))}], t = {args.thickness:g} Å, {args.voltage:g} kV"
    plot_pattern({"dynamical (Bloch)": dyn, "kinematical": kin}, out / "pattern.png", title=title)
    # Pendellösung of the strongest reflections: one decomposition serves all thicknesses
    thicknesses = np.linspace(0, max(2 * args.thickness, 1000.0), 201)
    series = simulate_pattern(crystal, thickness=thicknesses, absorption=args.absorption, **common)
    spots = table[(table[["h", "k", "l"]] != 0).any(axis=1)].nlargest(4, "intensity")
    curves = {}
    for _, row in spots.iterrows():
        sel = series[(series.h == row.h) & (series.k == row.k) & (series.l == row.l)]
        curves[f"{int(row.h)} {int(row.k)} {int(row.l)}"] = sel["intensity"].to_numpy()
    plot_curves(thicknesses, curves, out / "pendellosung.png", xlabel="thickness (Å)", ylabel="intensity (of incident)",
                title="Pendellösung of the strongest beams")
    shown = table[(table[["h", "k", "l"]] != 0).any(axis=1)].nlargest(12, "intensity")
    print(title)
    print(f"{len(dyn)} beams; transmitted beam keeps {dyn.loc[(dyn[['h','k','l']] == 0).all(axis=1), 'intensity'].iloc[0]:.3f} of the intensity")
    print(shown[["h", "k", "l", "intensity", "intensity_kinematic", "excitation_error"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {out / 'pattern.csv'}, {out / 'pattern.png'}, {out / 'pendellosung.png'}")
    return 0


def cmd_demo(args) -> int:
    from .refine.demo import run_demo

    return run_demo(args)


def cmd_refine(args) -> int:
    from .refine.command import run_refine

    return run_refine(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edwidgets", description="Quantitative 3D electron diffraction: Bloch-wave simulation and refinement.")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate a dynamical and a kinematical zone-axis pattern")
    sim.add_argument("--structure", default="quartz_P3221", help="CIF file or shipped structure name (default quartz_P3221)")
    sim.add_argument("--zone-axis", type=int, nargs=3, default=(0, 0, 1), metavar=("U", "V", "W"))
    sim.add_argument("--thickness", type=float, default=500.0, help="Å (default 500)")
    sim.add_argument("--voltage", type=float, default=200.0, help="kV (default 200)")
    sim.add_argument("--g-max", type=float, default=1.5, help="Å⁻¹ (default 1.5)")
    sim.add_argument("--sg-max", type=float, default=0.02, help="Å⁻¹ (default 0.02)")
    sim.add_argument("--absorption", type=float, default=0.0, help="κ of the proportional model U' = κU")
    sim.add_argument("--out", default="edwidgets-simulation", help="output folder")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="synthetic refinement demo (a few minutes on 2 cores)")
    demo.add_argument("--out", default="edwidgets-demo")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--quick", action="store_true", help="tiny version for tests")
    demo.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    demo.set_defaults(func=cmd_demo)

    ref = sub.add_parser("refine", help="refine a structure against 3D-ED data (.cif_pets)")
    ref.add_argument("--structure", required=True)
    ref.add_argument("--data", required=True)
    ref.add_argument("--out", required=True)
    from .refine.command import add_refine_arguments

    add_refine_arguments(ref)
    ref.set_defaults(func=cmd_refine)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdwidgetsError as exc:
        print(f"edwidgets: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edwidgets: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
