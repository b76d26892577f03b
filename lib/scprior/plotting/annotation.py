"""Figures of notebook 02: macro-F1 bars per method and task, confusion matrices, pretraining curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from scprior.plotting.figures import figure_title, set_style


def macro_f1_bars(summary: pd.DataFrame, *, labels: Mapping[str, str], dataset: str, simulated: bool = False,
                  metric: str = "macro_f1") -> plt.Figure:
    """Grouped bars: seed-mean ``metric`` (+/- sd) per task (groups) and method (bars)."""
    set_style()
    tasks = list(dict.fromkeys(summary["task"]))
    methods = list(dict.fromkeys(summary["method"]))
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(tasks)), 4))
    width = 0.8 / max(len(methods), 1)
    colors = plt.get_cmap("tab10")
    for j, m in enumerate(methods):
        sub = summary[summary["method"] == m].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width
        ax.bar(x, sub[f"{metric}_mean"].to_numpy(), width, yerr=sub[f"{metric}_sd"].to_numpy(),
               label=labels.get(m, m), color=colors(j % 10), capsize=2)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=15)
    ax.set_ylabel(f"{metric} (mean +/- sd over seeds)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small", ncol=2, loc="lower left")
    ax.set_title(figure_title("Cell-type annotation: macro-F1 per method and task", dataset=dataset,
                              simulated=simulated))
    return fig


def confusion_grid(details: Mapping[str, Mapping[str, dict]], *, methods: Sequence[str], dataset: str,
                   labels: Mapping[str, str], simulated: bool = False) -> plt.Figure:
    """Row-normalised confusion matrices (rows: true class, columns: predicted), one per task x method."""
    set_style()
    tasks = list(details)
    fig, axes = plt.subplots(len(tasks), len(methods), figsize=(3.2 * len(methods), 3.0 * len(tasks)),
                             squeeze=False)
    for i, t in enumerate(tasks):
        for j, m in enumerate(methods):
            ax = axes[i, j]
            sc = details[t].get(m)
            ax.set_xticks([])
            ax.set_yticks([])
            if sc is None:
                ax.set_axis_off()
                continue
            c = np.asarray(sc["confusion"], dtype=float)
            c = c / np.where(c.sum(1, keepdims=True) == 0, 1, c.sum(1, keepdims=True))
            ax.imshow(c, vmin=0, vmax=1, cmap="Blues")
            ax.set_title(f"{t}\n{labels.get(m, m)}", fontsize="x-small")
            if j == 0:
                ax.set_yticks(range(len(sc["labels"])), sc["labels"], fontsize=5)
    fig.suptitle(figure_title("Confusion matrices (rows true, columns predicted; first seed)", dataset=dataset,
                              simulated=simulated))
    fig.tight_layout()
    return fig


def pretraining_curve(history: Sequence[Mapping[str, float]], *, dataset: str, simulated: bool = False) -> plt.Figure:
    """Masked-gene loss of training and held-out corpus cells per epoch."""
    set_style()
    h = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for col in ("train_loss", "val_loss"):
        if col in h:
            ax.plot(h["epoch"], h[col], marker="o", label=col)
    ax.set_xlabel("epoch")
    ax.set_ylabel("0.2 CE(id) + 0.8 MSE(value)")
    ax.legend()
    ax.set_title(figure_title("GeneCompass masked-gene pretraining", dataset=dataset, simulated=simulated))
    return fig
