"""Large-scale scoring mode: stratified subsample, and on the Baron demo (human + mouse, ~4,000
cells) every score within 0.01 of scib-metrics' full Benchmarker computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprior.paths import project_root
from scprior.tasks.integration.large_scale import large_scale_scores, stratified_subsample


def test_stratified_subsample_is_proportional_keeps_small_strata_and_is_seeded():
    strata = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 10)
    idx = stratified_subsample(strata, 100, seed=0)
    counts = pd.Series(strata[idx]).value_counts()
    assert counts["a"] == 90 and counts["b"] == 9 and counts["c"] == 1
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, stratified_subsample(strata, 100, seed=0))
    assert not np.array_equal(idx, stratified_subsample(strata, 100, seed=1))
    floor = pd.Series(strata[stratified_subsample(strata, 100, min_per_stratum=20)]).value_counts()
    assert floor["b"] == 20 and floor["c"] == 10  # all of a stratum smaller than the floor
    assert len(stratified_subsample(strata, 5000)) == 1000


def _demo():
    import anndata as ad
    import scanpy as sc

    folder = project_root() / "data" / "processed"
    if not (folder / "baron_human.h5ad").is_file():
        pytest.skip("data/processed (the Baron demo) is not built in this checkout")
    parts = {}
    for s in ("human", "mouse"):
        a = ad.read_h5ad(folder / f"baron_{s}.h5ad")
        a.var_names = a.var_names.str.upper()
        parts[s] = a[:, ~a.var_names.duplicated()]
    shared = parts["human"].var_names.intersection(parts["mouse"].var_names)
    a = ad.concat([p[:, shared] for p in parts.values()], index_unique="-")
    a.X = a.layers["counts"].astype(np.float32)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=2000)
    a = a[:, a.var["highly_variable"]].copy()
    sc.pp.pca(a, n_comps=30, random_state=0)
    emb = a.obsm["X_pca"].copy()  # a simple integration: each species' PCs centred
    for s in ("human", "mouse"):
        mask = (a.obs["species"] == s).to_numpy()
        emb[mask] -= emb[mask].mean(0)
    a.obsm["X_centred"] = emb
    return a


@pytest.mark.slow
def test_large_scale_mode_is_within_0_01_of_the_full_benchmarker_on_the_demo():
    from scprior.tasks.integration.metrics import scib_benchmark, scib_scores

    a = _demo()
    full = scib_scores(scib_benchmark(a, ["X_centred"], label_key="cell_type", batch_key="species")[0]).loc["X_centred"]
    scores, info = large_scale_scores(a.obsm["X_centred"], a.obs["cell_type"], a.obs["species"], a.obsm["X_pca"],
                                      subsample=1500, seed=0)
    assert info["subsample"] < 0.5 * a.n_obs  # the costly metrics really ran on a subsample
    diff = (scores - full[scores.index]).abs()
    assert (diff <= 0.01).all(), diff[diff > 0.01]
