"""Figures of notebook 05_perturbation: metrics by subgroup, predicted vs true deltas, GI recovery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scprior.plotting.figures import figure_title

SUBGROUP_ORDER = ("combo_seen0", "combo_seen1", "combo_seen2", "unseen_single", "seen_single", "all")
METRIC_LABELS = {"pearson_delta": "Pearson of delta (all genes)", "pearson_delta_de": "Pearson of delta (top-20 DE)",
                 "mse_de": "MSE (top-20 DE), lower is better",
                 "pearson_delta_de_no_target": "Pearson of delta (DE, target removed)"}


def _method_palette(methods: Sequence[str]) -> dict[str, tuple]:
    """Baselines in muted colours (no change in grey), knowledge / deep models and GEARS in strong ones."""
    strong = [m for m in methods if m.startswith(("scgpt", "scgenept", "residual", "gears"))]
    base = [m for m in methods if m not in strong and m != "no_change"]
    colors = {"no_change": (0.6, 0.6, 0.6)}
    colors.update(zip(base, sns.color_palette("pastel", len(base)) if len(base) > 8 else sns.color_palette("Set2", len(base))))
    colors.update(zip(strong, sns.color_palette("dark", 10)[:len(strong)]))
    return colors


def metric_bars(uncertainty: pd.DataFrame, *, dataset: str, simulated: bool,
                metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse_de"),
                methods: Sequence[str] | None = None) -> plt.Figure:
    """One panel per metric: bars per subgroup and method (mean over seeds) with the bootstrap
    interval over test conditions as error bars; each subgroup's label shows its n test conditions.

    ``uncertainty``: :func:`scprior.tasks.perturbation.subgroup_uncertainty` table (method,
    subgroup, n_conditions, n_seeds, ``metric``, ``metric_ci_low``, ``metric_ci_high``).
    """
    methods = list(methods or pd.unique(uncertainty["method"]))
    order = [s for s in SUBGROUP_ORDER if s in set(uncertainty["subgroup"])]
    n = uncertainty.groupby("subgroup")["n_conditions"].max()
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(8, 1.6 * len(order) * max(1, len(methods) / 6)), 3.2 * len(metrics)),
                             squeeze=False)
    palette = _method_palette(methods)
    width = 0.8 / max(len(methods), 1)
    table = uncertainty.set_index(["method", "subgroup"])
    for ax, metric in zip(axes[:, 0], metrics):
        for j, method in enumerate(methods):
            xs, ys, lo, hi = [], [], [], []
            for i, sub in enumerate(order):
                if (method, sub) not in table.index:
                    continue
                row = table.loc[(method, sub)]
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(row[metric])
                lo.append(row[metric] - row[f"{metric}_ci_low"])
                hi.append(row[f"{metric}_ci_high"] - row[metric])
            ax.bar(xs, ys, width=width, color=palette[method], label=method,
                   yerr=[lo, hi], error_kw={"elinewidth": 0.6, "capsize": 1.5})
        ax.set_xticks(range(len(order)), [f"{s}\n(n={int(n.loc[s])})" for s in order], fontsize=8)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=8)
        ax.axhline(0, lw=0.5, color="k")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="method")
    n_seeds = int(uncertainty["n_seeds"].max())
    fig.suptitle(figure_title(f"GEARS metrics by test subgroup ({n_seeds} seed{'s' if n_seeds > 1 else ''}; "
                              "bars: 95% bootstrap interval over test conditions; n per seed)",
                              dataset=dataset, simulated=simulated))
    fig.tight_layout()
    return fig


def delta_scatter(truth: pd.DataFrame, ctrl: np.ndarray, predictions: Mapping[str, pd.DataFrame],
                  conditions: Sequence[str], *, de_genes: Mapping[str, Sequence[int]] | None = None,
                  dataset: str, simulated: bool) -> plt.Figure:
    """Rows: conditions; columns: methods. x = observed delta (mean - control), y = predicted delta;
    top-20 DE genes in colour."""
    methods = list(predictions)
    fig, axes = plt.subplots(len(conditions), len(methods), figsize=(2.3 * len(methods), 2.3 * len(conditions)),
                             squeeze=False, sharex="row", sharey="row")
    for i, cond in enumerate(conditions):
        true = truth.loc[cond].to_numpy() - ctrl
        de = np.asarray(de_genes.get(cond, []) if de_genes else [], dtype=int)
        for j, method in enumerate(methods):
            ax = axes[i, j]
            pred = predictions[method].loc[cond].to_numpy() - ctrl
            ax.scatter(true, pred, s=3, color="0.6", alpha=0.5, rasterized=True)
            if len(de):
                ax.scatter(true[de], pred[de], s=10, color="C3", label="top-20 DE")
            lim = np.nanmax(np.abs(np.concatenate([true, pred]))) * 1.05 or 1.0
            ax.plot([-lim, lim], [-lim, lim], lw=0.6, color="k", ls="--")
            ax.axhline(0, lw=0.4, color="k")
            ax.axvline(0, lw=0.4, color="k")
            if i == 0:
                ax.set_title(method, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{cond}\npredicted delta", fontsize=7)
            if i == len(conditions) - 1:
                ax.set_xlabel("observed delta", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(figure_title("Predicted vs observed expression change (test perturbations)", dataset=dataset,
                              simulated=simulated))
    fig.tight_layout()
    return fig


def gi_recovery_plot(gi: pd.DataFrame, *, dataset: str, simulated: bool, methods: Sequence[str] | None = None) -> plt.Figure:
    """Bars per method (mean over seeds, sd): Spearman of GI magnitudes and Pearson of non-additive
    residuals between predictions and observations, over the test doubles whose singles exist."""
    methods = list(methods or pd.unique(gi["method"]))
    long = gi.melt(id_vars=["seed", "method"], value_vars=["magnitude_spearman", "residual_pearson"],
                   var_name="score", value_name="value")
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(methods)), 3.6))
    sns.barplot(data=long, x="method", y="value", hue="score", order=methods, errorbar="sd", ax=ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="score")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("")
    ax.set_ylabel("agreement with observed GI")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    n = int(gi["n_doubles"].max()) if "n_doubles" in gi and len(gi) else 0
    ax.set_title(figure_title(f"Genetic-interaction recovery ({n} test doubles with both singles)",
                              dataset=dataset, simulated=simulated))
    fig.tight_layout()
    return fig


def gi_truth_plot(table: pd.DataFrame, *, dataset: str, simulated: bool) -> plt.Figure:
    """Predicted vs observed GI magnitude per double, one panel per method; colour = simulated GI type
    (``table``: method, condition, predicted, observed, gi_type)."""
    methods = list(pd.unique(table["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(2.8 * len(methods), 3.4), squeeze=False, sharey=True)
    hue = "gi_type" if "gi_type" in table else None
    for ax, method in zip(axes[0], methods):
        sub = table[table["method"] == method]
        sns.scatterplot(data=sub, x="observed", y="predicted", hue=hue, ax=ax, s=18, legend=ax is axes[0, -1])
        ax.set_title(method, fontsize=8)
        ax.set_xlabel("observed magnitude", fontsize=7)
        ax.set_ylabel("predicted magnitude", fontsize=7)
    if hue and axes[0, -1].legend_:
        axes[0, -1].legend(fontsize=6, title="simulated GI", title_fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(figure_title("GI magnitude sqrt(c1^2 + c2^2) per test double", dataset=dataset, simulated=simulated))
    fig.tight_layout()
    return fig
