"""Figures of notebook 04_drug_dose_response: R2 bars, dose-response curves, the basal latent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scprior.plotting.figures import figure_title

METRIC_LABELS = {"r2_mean": "R2 of mean (all genes)", "r2_mean_de": "R2 of mean (top-50 DE)",
                 "r2_var": "R2 of variance (all genes)"}


def _palette(methods: Sequence[str]) -> dict[str, tuple]:
    models = [m for m in methods if "cpa" in m]
    base = [m for m in methods if m not in models]
    colors = dict(zip(base, sns.color_palette("Set2", max(len(base), 1))))
    colors.update(zip(models, sns.color_palette("dark", 10)[3:3 + len(models)]))
    return colors


def r2_bars(per_seed: pd.DataFrame, *, dataset: str, simulated: bool,
            metrics: Sequence[str] = ("r2_mean", "r2_mean_de", "r2_var"), clip: float = -1.0) -> plt.Figure:
    """Bars per split and method (mean over seeds of the per-condition mean; sd over seeds as error
    bars). Values below ``clip`` are drawn at ``clip`` (the axis says so)."""
    methods = list(pd.unique(per_seed["method"]))
    splits = list(pd.unique(per_seed["split"]))
    data = per_seed.copy()
    for m in metrics:
        data[m] = data[m].clip(lower=clip)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 2, 3.6), squeeze=False)
    pal = _palette(methods)
    for ax, metric in zip(axes[0], metrics):
        sns.barplot(data=data, x="split", y=metric, hue="method", order=splits, hue_order=methods, palette=pal,
                    errorbar="sd", ax=ax)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric) + f" (clipped at {clip})", fontsize=8)
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelsize=7)
        if ax.legend_:
            ax.legend_.remove()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="method")
    n = per_seed["seed"].nunique()
    fig.suptitle(figure_title(f"CPA's R2 metrics per split ({n} seed{'s' if n > 1 else ''})", dataset=dataset,
                              simulated=simulated))
    fig.tight_layout()
    return fig


def dose_response_curves(observed: pd.DataFrame, predicted: Mapping[str, pd.DataFrame], *, dataset: str,
                         simulated: bool, ood_dose: float | None = None, dose_label: str = "dose") -> plt.Figure:
    """One panel per (drug, gene): observed mean log expression by dose (points, with sd) and each
    method's prediction (lines). ``observed``: columns drug, gene, dose, mean, sd; ``predicted``:
    method -> columns drug, gene, dose, mean. Vehicle is drawn at the lowest dose / 10."""
    panels = list(observed[["drug", "gene"]].drop_duplicates().itertuples(index=False))
    ncol = min(4, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.8 * nrow), squeeze=False)
    colors = dict(zip(predicted, sns.color_palette("dark", 10)[3:]))
    for ax, (drug, gene) in zip(axes.ravel(), panels):
        obs = observed[(observed["drug"] == drug) & (observed["gene"] == gene)].sort_values("dose")
        ax.errorbar(obs["dose"], obs["mean"], yerr=obs["sd"], fmt="o", color="black", ms=4, capsize=2, label="observed")
        for method, table in predicted.items():
            p = table[(table["drug"] == drug) & (table["gene"] == gene)].sort_values("dose")
            ax.plot(p["dose"], p["mean"], "-", color=colors[method], lw=1.5, label=method)
        if ood_dose is not None:
            ax.axvline(ood_dose, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_title(f"{drug}: {gene}", fontsize=8)
        ax.set_xlabel(dose_label, fontsize=7)
        ax.set_ylabel("mean log expression", fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(figure_title("Dose response of signature genes: observed vs predicted (dotted: held-out dose)",
                              dataset=dataset, simulated=simulated))
    fig.tight_layout()
    return fig


def basal_latent_plot(coords: np.ndarray, drug: np.ndarray, dose: np.ndarray, *, dataset: str, simulated: bool,
                      accuracy: Mapping[str, float] | None = None) -> plt.Figure:
    """The basal latent in 2-D (PCA), coloured by drug and by dose: it should not separate them."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    order = list(pd.unique(drug))
    pal = dict(zip(order, sns.color_palette("tab20", len(order)) if len(order) > 10 else sns.color_palette("tab10", len(order))))
    for name in order:
        sel = drug == name
        axes[0].scatter(coords[sel, 0], coords[sel, 1], s=3, color=pal[name], label=name, alpha=0.6, rasterized=True)
    axes[0].set_title("coloured by drug")
    if len(order) <= 25:
        axes[0].legend(fontsize=5, markerscale=3, ncol=2, loc="best")
    shown = np.where(dose > 0, np.log10(np.maximum(dose, 1e-12)), np.nan)
    sc = axes[1].scatter(coords[:, 0], coords[:, 1], s=3, c=np.nan_to_num(shown, nan=np.nanmin(shown) - 1 if np.isfinite(shown).any() else 0),
                         cmap="viridis", alpha=0.6, rasterized=True)
    fig.colorbar(sc, ax=axes[1], label="log10 dose (vehicle: lowest)")
    axes[1].set_title("coloured by dose")
    for ax in axes:
        ax.set_xlabel("basal PC1")
        ax.set_ylabel("basal PC2")
    text = ""
    if accuracy:
        text = (f" | drug classifier accuracy: basal {accuracy['accuracy_basal']:.2f}, input PCA "
                f"{accuracy['accuracy_input_pca']:.2f}, chance {accuracy['majority_rate']:.2f}")
    fig.suptitle(figure_title("CPA basal latent (should not separate drugs or doses)" + text, dataset=dataset,
                              simulated=simulated))
    fig.tight_layout()
    return fig
