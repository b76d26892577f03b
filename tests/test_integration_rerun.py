"""A seeded rerun of the integration task repeats its numbers exactly: methods trained in
parallel seeds (joblib processes, one thread each) give the same embeddings on a rerun, and so do
the scores (scib-metrics with its JAX k-means, SATURN transfer, kNN, tree)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from integration_helpers import one_torch_thread  # noqa: F401

from scprior.tasks.integration import evaluation as ev
from scprior.tasks.integration import methods as mt
from scprior.tasks.integration.metrics import scib_scores as me_numeric

SETTINGS = {
    "baselines": {"n_pcs": 10, "scvi_latent": 5, "scvi_epochs": 2, "scvi_batch_size": 64},
    "macrogenes": {"n_macrogenes": 16, "hidden_dim": 16, "latent_dim": 8, "pretrain_epochs": 2, "metric_epochs": 1,
                   "n_clusters": 4, "batch_size": 64, "l1_weight": 0.001, "patience": 5},
    "uce": {"d_model": 8, "nhead": 2, "d_hid": 16, "nlayers": 1, "output_dim": 8, "head_hidden": 8,
            "decoder_hidden": [8], "sample_size": 16, "n_positive": 4, "n_negative": 4, "epochs": 1,
            "batch_size": 64},
}
METHODS = ["pca", "harmony", "scvi", "saturn", "uce"]


@pytest.fixture(scope="module")
def task(processed_dir, knowledge_dir):
    return mt.prepare_task(processed_dir, knowledge_dir, n_hvg=300, n_hvg_orthologs=300, max_cells=80, seed=0)


def _same_runs(a, b, *, atol: float = 0.0) -> None:
    """Equal embeddings (exactly unless ``atol``)."""
    assert list(a) == list(b)
    for seed in a:
        for m in a[seed]:
            np.testing.assert_allclose(a[seed][m].embedding, b[seed][m].embedding, rtol=0, atol=atol,
                                       err_msg=f"{m} seed {seed}")
            for d in a[seed][m].unseen:
                np.testing.assert_allclose(a[seed][m].unseen[d], b[seed][m].unseen[d], rtol=0, atol=atol,
                                           err_msg=f"{m} {d}")


@pytest.mark.slow
def test_seeded_rerun_repeats_embeddings_and_scores_exactly(task):
    """As ``dvc repro`` runs it: seeds in parallel processes (n_jobs=2), one thread each."""
    first = mt.run_seeds(task, SETTINGS, seeds=[0, 1], methods=METHODS, n_jobs=2, threads=1)
    again = mt.run_seeds(task, SETTINGS, seeds=[0, 1], methods=METHODS, n_jobs=2, threads=1)
    _same_runs(first, again)
    assert not np.array_equal(first[0]["saturn"].embedding, first[1]["saturn"].embedding)
    assert set(first[0]["saturn"].unseen) == {"human->mouse", "mouse->human"}
    kw = {"donor_batch": False, "kbet": False}
    rec1, tab1 = ev.evaluate_seeds(task.obs, first, n_jobs=2, threads=1, **kw)
    rec2, tab2 = ev.evaluate_seeds(task.obs, again, n_jobs=2, threads=1, **kw)
    cols = [c for c in rec1.columns if c != "seconds"]
    pd.testing.assert_frame_equal(rec1[cols], rec2[cols], check_exact=True)
    pd.testing.assert_frame_equal(tab1[0], tab2[0], check_exact=True)


@pytest.mark.slow
def test_scoring_split_by_part_equals_scoring_by_seed_and_ablations_leave_the_rest_unchanged(processed_dir,
                                                                                             knowledge_dir):
    """Two processes scoring by part (main scib tables | donor tables + transfer, kNN, tree) give
    the scores of one process per seed, and a rerun repeats them exactly; leaving the ablation out
    of seed 1, or running it as a job of its own, changes the other embeddings by float32 rounding
    at most. Calls run alongside the scoring return what they return in this process."""
    from functools import partial

    from joblib import Parallel, delayed

    from scprior.plotting.integration import umap_coordinates

    # donor batch scores need enough cells per donor for scib-metrics' neighbourhoods
    task = mt.prepare_task(processed_dir, knowledge_dir, n_hvg=300, n_hvg_orthologs=300, max_cells=250, seed=0)
    methods = ["pca", "harmony", "saturn", "unify_text"]
    # as the notebook runs them: one fresh process per job (3 here: seed 0's ablation, seed 0, seed 1)
    full = mt.run_seeds(task, SETTINGS, seeds=[0, 1], methods=methods, n_jobs=2, threads=1)
    cut = mt.run_seeds(task, SETTINGS, seeds=[0, 1], methods=methods, n_jobs=3, threads=1, ablation_seeds=1)
    assert "unify_text" in cut[0] and "unify_text" not in cut[1]
    # other job layouts (and joblib's reused workers) round differently in float32 BLAS: ~1e-6
    _same_runs({1: {m: r for m, r in full[1].items() if m != "unify_text"}}, {1: cut[1]}, atol=1e-5)
    _same_runs({0: full[0]}, {0: cut[0]}, atol=1e-5)  # seed 0's ablation ran as a job of its own
    assert list(cut[0]) == methods
    kw = {"donor_batch": True, "kbet": False, "min_cells": 5}
    rec, tabs = ev.evaluate_seeds(task.obs, cut, n_jobs=2, threads=1, **kw)
    # the rerun with calls alongside (the notebook's UMAPs): the same scores, and the calls' results
    # equal to running them here
    calls = {m: partial(umap_coordinates, cut[0][m].embedding, n_neighbors=5, seed=0) for m in ("pca", "saturn")}
    rec2, tabs2, coords = ev.evaluate_seeds_alongside(task.obs, cut, calls, n_jobs=2, threads=1, **kw)
    cols = [c for c in rec.columns if c != "seconds"]
    pd.testing.assert_frame_equal(rec[cols], rec2[cols], check_exact=True)  # a rerun: exactly
    assert list(coords) == ["pca", "saturn"]
    for m, c in coords.items():
        np.testing.assert_array_equal(c, calls[m]())
    by_seed = Parallel(n_jobs=2)(delayed(ev._evaluate_seed_worker)(task.obs, cut[s], s, 1, kw) for s in (0, 1))
    ref = pd.concat([r for r, _ in by_seed], ignore_index=True)
    # against one process per seed: the same scores up to float32 rounding (JAX compiles after
    # different earlier calls; a solver path can move a transfer score further on the full data)
    pd.testing.assert_frame_equal(rec[cols], ref[cols], check_exact=False, rtol=1e-5, atol=1e-6)
    for t, (_, t_ref) in zip(tabs, by_seed):
        pd.testing.assert_frame_equal(me_numeric(t), me_numeric(t_ref), check_exact=False, rtol=1e-5, atol=1e-6)
    assert rec.groupby("method").size().to_dict() == {"pca": 2, "harmony": 2, "saturn": 2, "unify_text": 1}
