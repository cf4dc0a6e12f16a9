"""Static figures (matplotlib, PNG) for the command line and reports. Widgets live in edwidgets.ui."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    """Save through a temporary file so an interrupted write never leaves half a PNG."""
    import io

    from .io_utils import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=130, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def plot_pattern(patterns: dict[str, pd.DataFrame], path, title: str = "", label_top: int = 8) -> Path:
    """Spot patterns side by side (area ∝ intensity^(1/2)); ``patterns`` maps a panel title to a
    DataFrame from simulate_pattern/kinematic_pattern for one orientation and thickness."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(patterns), figsize=(5.2 * len(patterns), 5.2), squeeze=False)
    for ax, (name, df) in zip(axes[0], patterns.items()):
        spots = df[(df[["h", "k", "l"]] != 0).any(axis=1)]
        top = spots["intensity"].max() if len(spots) else 1.0
        size = 400 * np.sqrt(np.clip(spots["intensity"] / top, 0, None))
        ax.scatter(spots["x"], spots["y"], s=size, c=np.log10(spots["intensity"].clip(lower=top * 1e-6)), cmap="viridis")
        ax.scatter([0], [0], marker="+", color="red", s=80)
        for _, row in spots.nlargest(label_top, "intensity").iterrows():
            ax.annotate(f"{int(row.h)}{int(row.k)}{int(row.l)}", (row.x, row.y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_aspect("equal")
        ax.set_title(name)
        ax.set_xlabel("x (Å⁻¹)")
        ax.set_ylabel("y (Å⁻¹)")
    if title:
        fig.suptitle(title)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_curves(x, curves: dict[str, np.ndarray], path, *, xlabel: str, ylabel: str, title: str = "", logy: bool = False,
                markers: dict[str, str] | None = None) -> Path:
    """Line plot of named curves sharing an x axis (R-factor curves, thickness vs tilt, Pendellösung)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, y in curves.items():
        style = (markers or {}).get(name, "-")
        ax.plot(x if not isinstance(y, tuple) else y[0], y if not isinstance(y, tuple) else y[1], style, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out
