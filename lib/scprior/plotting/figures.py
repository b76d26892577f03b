"""Figure style, titles that say real or simulated, and saving PNG + SVG under stable names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns

from scprior.safe_io import atomic_path, check_writable


def set_style() -> None:
    """One look for every scprior figure; SVG text stays text and SVG ids are stable across runs."""
    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "scprior", "figure.dpi": 100, "savefig.bbox": "tight",
                         "axes.titlesize": "medium", "axes.titleweight": "bold"})


def figure_title(text: str, *, dataset: str, simulated: bool) -> str:
    """A title naming the dataset and saying whether it is real or simulated."""
    tag = "SIMULATED data" if simulated else "real data"
    return f"{text}\n{dataset} ({tag})"


def save_figure(fig: plt.Figure, figures_dir: str | os.PathLike, name: str,
                formats: Sequence[str] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``figures_dir/name.<fmt>`` for each format (no timestamps: stable bytes)."""
    out_dir = check_writable(figures_dir)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        metadata = {"Date": None} if fmt == "svg" else ({"Software": None} if fmt == "png" else None)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
        paths.append(path)
    return paths
