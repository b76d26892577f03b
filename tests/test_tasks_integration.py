"""The integration task's pieces on tiny data: orthologs, HVGs, baselines, metrics, summaries."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from integration_helpers import one_torch_thread, two_species  # noqa: F401

from scprior.errors import ScpriorInputError
from scprior.tasks.integration import evaluation as ev
from scprior.tasks.integration import metrics as me
from scprior.tasks.integration.baselines import harmony_embedding, pca_embedding
from scprior.tasks.integration.data import (
    load_knowledge,
    one2one_pairs,
    ortholog_adata,
    select_hvgs,
    with_ortholog_partners,
)
from scprior.tasks.integration.methods import MethodRun, TaskData, scaled, with_overrides


def _structured(n_per: int = 40, seed: int = 0, shift: float = 3.0):
    """Two species x 3 cell types in 8-d: types separate; species differ by a constant shift."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, 8))
    rows, labels, species, donors = [], [], [], []
    for s_i, s in enumerate(("human", "mouse")):
        for t in range(3):
            rows.append(centres[t] + s_i * shift + rng.normal(size=(n_per, 8)))
            labels += [f"type{t}"] * n_per
            species += [s] * n_per
            donors += [f"{s}_d{k % 2}" for k in range(n_per)]
    obs = pd.DataFrame({"cell_type": labels, "species": species, "batch": donors},
                       index=[f"c{i}" for i in range(len(labels))])
    return np.vstack(rows).astype(np.float32), obs


def test_orthologs_keep_unique_one2one_pairs_measured_in_both():
    adatas = two_species(n_genes=12)
    for a in adatas.values():
        a.X = a.layers["counts"].copy()
    orth = pd.DataFrame({"human": ["GENE0", "GENE1", "GENE2", "GENE3", "GENE3", "GENE11"],
                         "mouse": ["Gene0", "Gene1", "Gene5", "Gene3", "Gene4", "Gene9"],
                         "homology_type": ["one2one", "one2one", "one2many", "one2one", "one2one", "one2one"],
                         "confidence": 1})
    pairs = one2one_pairs(orth, adatas["human"].var_names, adatas["mouse"].var_names)
    assert list(pairs["human"]) == ["GENE0", "GENE1"]  # GENE3 is not unique; Gene9 is not measured
    o = ortholog_adata(adatas, orth)
    assert o.shape == (170, 2) and list(o.var["mouse"]) == ["Gene0", "Gene1"]
    np.testing.assert_array_equal(o.layers["counts"][90:].toarray()[:, 1], adatas["mouse"].layers["counts"][:, 1].toarray().ravel())
    assert list(o.obs["species"].cat.categories) == ["human", "mouse"]
    with pytest.raises(ScpriorInputError, match="No one-to-one"):
        one2one_pairs(orth.assign(homology_type="many2many"), adatas["human"].var_names, adatas["mouse"].var_names)


def test_ortholog_partners_complete_each_species_hvgs_with_the_others():
    adatas = two_species(n_genes=12)
    orth = pd.DataFrame({"human": ["GENE0", "GENE1", "GENE2", "GENE3"], "mouse": ["Gene0", "Gene1", "Gene2", "Gene3"],
                         "homology_type": "one2one", "confidence": 1})
    hvg = {"human": adatas["human"][:, ["GENE0", "GENE5"]].copy(), "mouse": adatas["mouse"][:, ["Gene1", "Gene2"]].copy()}
    out = with_ortholog_partners(hvg, adatas, orth, covered={"human": ["GENE0", "GENE5", "GENE1"],
                                                             "mouse": ["Gene0", "Gene1", "Gene2"]})
    assert list(out["human"].var_names) == ["GENE0", "GENE5", "GENE1"]  # GENE2 has no embedding (not covered)
    assert list(out["mouse"].var_names) == ["Gene1", "Gene2", "Gene0"]
    np.testing.assert_array_equal(out["mouse"].layers["counts"][:, 2].toarray(),
                                  adatas["mouse"][:, "Gene0"].layers["counts"].toarray())
    assert list(hvg["human"].var_names) == ["GENE0", "GENE5"]  # inputs untouched
    with pytest.raises(ScpriorInputError, match="human and mouse"):
        with_ortholog_partners({"human": hvg["human"]}, {"human": adatas["human"]}, orth)


def test_uce_reads_each_species_own_hvgs_not_the_ortholog_partners():
    adatas = two_species(n_genes=12)
    orth = pd.DataFrame({"human": ["GENE0", "GENE1"], "mouse": ["Gene0", "Gene1"], "homology_type": "one2one",
                         "confidence": 1})
    hvg = {"human": adatas["human"][:, ["GENE0"]].copy(), "mouse": adatas["mouse"][:, ["Gene1"]].copy()}
    full = with_ortholog_partners(hvg, adatas, orth)
    task = TaskData(adatas=adatas, hvg=full, orthologs=adatas["human"], knowledge=None,
                    own_hvgs={s: list(a.var_names) for s, a in hvg.items()})
    assert task.species_hvg_genes() == {"human": ["GENE0"], "mouse": ["Gene1"]}
    assert list(full["human"].var_names) == ["GENE0", "GENE1"]
    plain = TaskData(adatas=adatas, hvg=full, orthologs=adatas["human"], knowledge=None)
    assert plain.species_hvg_genes()["mouse"] == ["Gene1", "Gene0"]


def test_select_hvgs_returns_requested_number_of_expressed_genes():
    a = two_species(n_genes=40)["human"]
    genes = select_hvgs(a, 10)
    assert len(genes) == 10 and len(set(genes)) == 10 and set(genes) <= set(a.var_names)
    assert select_hvgs(a, 1000) == [g for g in a.var_names if (a.layers["counts"][:, [list(a.var_names).index(g)]] > 0).sum() >= 3]


def test_baselines_shapes_and_harmony_mixes_species():
    x, obs = _structured()
    a = ad.AnnData(X=np.abs(x), obs=obs)
    pca = pca_embedding(a, n_comps=5, seed=0)
    assert pca.shape == (240, 5)
    h = harmony_embedding(pca, obs["species"].to_numpy(), seed=0)
    assert h.shape == pca.shape
    sp = obs["species"].to_numpy()
    gap = lambda e: np.linalg.norm(e[sp == "human"].mean(0) - e[sp == "mouse"].mean(0))  # noqa: E731
    assert gap(h) < gap(pca)


def test_scaled_is_zero_mean_unit_variance():
    x, obs = _structured()
    out = scaled(ad.AnnData(X=x, obs=obs))
    np.testing.assert_allclose(out.X.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.X.std(0), 1, atol=1e-4)


def test_label_transfer_tree_and_mutual_nn_on_aligned_and_shifted_embeddings():
    x, obs = _structured(shift=0.0)
    labels, species = obs["cell_type"].to_numpy(), obs["species"].to_numpy()
    res = me.transfer_both_ways(x, labels, species)
    assert res["human->mouse"]["accuracy"] > 0.95 and res["mouse->human"]["n_types"] == 3
    assert res["human->mouse"]["ceiling"] == 1.0 and res["human->mouse"]["n_target"] == 120
    assert res["human->mouse"]["dummy"] == pytest.approx(1 / 3, abs=0.01)
    cents = me.celltype_centroids(x, labels, species)
    score, table = me.mutual_nn_score(cents)
    assert score == 1.0 and table["mutual"].all()
    link = me.celltype_tree(cents)
    assert link.shape == (5, 4)
    # scramble mouse labels: the mouse centroids no longer match the human ones
    scrambled = labels.copy()
    m = species == "mouse"
    scrambled[m] = np.roll(scrambled[m], 40)
    assert me.mutual_nn_score(me.celltype_centroids(x, scrambled, species))[0] == 0.0
    assert me.saturn_label_transfer(x, scrambled, species, source="human", target="mouse")["balanced_accuracy"] < 0.1


def test_saturn_transfer_scores_every_target_cell_and_counts_unmatched_types_as_errors():
    x, obs = _structured()
    labels = obs["cell_type"].to_numpy().copy()
    species = obs["species"].to_numpy()
    mouse = np.flatnonzero(species == "mouse")
    labels[mouse[:40]] = "mouse_only"  # a target type the source lacks
    res = me.saturn_label_transfer(x, labels, species, source="human", target="mouse")
    assert res["n_target"] == 120 and res["n_types"] == 3
    assert res["ceiling"] == pytest.approx(80 / 120)
    assert res["accuracy"] <= res["ceiling"] + 1e-12
    # mapped through a cell-type map: source names renamed to the target's
    renamed = np.where(species == "human", np.char.add("h_", labels.astype(str)), labels)
    cmap = {f"h_{t}": t for t in ("type0", "type1", "type2")}
    mapped = me.saturn_label_transfer(x, renamed, species, source="human", target="mouse", cell_type_map=cmap)
    assert mapped["accuracy"] == pytest.approx(res["accuracy"]) and mapped["ceiling"] == pytest.approx(res["ceiling"])
    again = me.saturn_label_transfer(x, labels, species, source="human", target="mouse")
    assert again == res  # seeded split, deterministic classifier
    with pytest.raises(ScpriorInputError):
        me.saturn_label_transfer(x, labels, species, source="human", target="frog")


def _low_variance_species_shift(n_per: int = 60, seed: int = 0):
    """Cell types on 2 high-variance axes; the species differ on 20 low-variance axes (as species-
    specific PCs do): standardising gives those axes the weight of the cell-type axes."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])
    direction = rng.normal(size=20)  # the species shift: ~20 sd of the low-variance axes
    rows, labels, species = [], [], []
    for s_i, s in enumerate(("human", "mouse")):
        for t, c in enumerate(centres):
            hi = c + rng.normal(scale=1.0, size=(n_per, 2))
            lo = rng.normal(scale=0.1, size=(n_per, 20)) + (2.0 if s_i else 0.0) * direction
            rows.append(np.hstack([hi, lo]))
            labels += [f"type{t}"] * n_per
            species += [s] * n_per
    return np.vstack(rows), np.asarray(labels), np.asarray(species)


def _standardised_transfer(x, labels, species, *, source, target):
    """The protocol this repository used before: standardised embedding, C=0.1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    src, tgt = species == source, species == target
    scaler = StandardScaler().fit(x[src])
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(x[src]), labels[src])
    return balanced_accuracy_score(labels[tgt], clf.predict(scaler.transform(x[tgt])))


def test_a_species_shift_on_low_variance_axes_sinks_standardising_but_not_saturns_protocol():
    x, labels, species = _low_variance_species_shift()
    for a, b in (("human", "mouse"), ("mouse", "human")):
        assert _standardised_transfer(x, labels, species, source=a, target=b) < 0.6
        res = me.saturn_label_transfer(x, labels, species, source=a, target=b)
        assert res["balanced_accuracy"] > 0.9 and res["accuracy"] > 0.9 and res["dummy"] < 0.35


def test_within_species_knn_sees_structure_and_not_noise():
    x, obs = _structured(n_per=30)
    labels, species = obs["cell_type"].to_numpy(), obs["species"].to_numpy()
    good = me.within_species_knn(x, labels, species, k=5)
    noise = me.within_species_knn(np.random.default_rng(0).normal(size=x.shape), labels, species, k=5)
    assert set(good) == {"human", "mouse"} and min(good.values()) > 0.9 and max(noise.values()) < 0.6


@pytest.mark.slow
def test_raw_pca_transfers_baron_labels_both_ways(processed_dir, knowledge_dir):
    """A small real Baron subset: PCA of log-normalised one-to-one orthologs, SATURN's protocol."""
    from scprior.knowledge.store import load_orthologs
    from scprior.tasks.integration.baselines import pca_embedding as pca
    from scprior.tasks.integration.data import load_baron, ortholog_adata, select_hvgs

    adatas = load_baron(processed_dir, max_cells=800, seed=0)
    orth = ortholog_adata(adatas, load_orthologs(knowledge_dir))
    orth = orth[:, select_hvgs(orth, 2000, batch_key="species")].copy()
    z = pca(orth, n_comps=50, seed=0)
    res = me.transfer_both_ways(z, orth.obs["cell_type"].astype(str).to_numpy(), orth.obs["species"].astype(str).to_numpy())
    for d, r in res.items():
        assert r["accuracy"] >= 0.75, (d, r)
        assert r["accuracy"] > r["dummy"] + 0.2


def test_sklearn_neighbors_include_self():
    x, _ = _structured(n_per=10)
    nn = me.sklearn_neighbors(x, 5)
    assert nn.indices.shape == (60, 5) and (nn.indices[:, 0] == np.arange(60)).all()
    assert (np.diff(nn.distances, axis=1) >= 0).all()


@pytest.mark.slow
def test_scib_benchmark_and_donor_scores_rank_a_good_embedding_higher():
    x, obs = _structured(n_per=30, shift=0.0)
    rng = np.random.default_rng(1)
    runs = {"pca": MethodRun(x + rng.normal(scale=6.0, size=x.shape).astype(np.float32), 0.0),
            "good": MethodRun(x, 1.0)}
    records, table = ev.evaluate_seed(obs, runs, seed=0, donor_batch=True)
    scores = me.scib_scores(table.drop(columns="seed"))
    assert scores.loc["X_good", "Bio conservation"] > scores.loc["X_pca", "Bio conservation"]
    assert set(records.columns) >= {"scib_total", "scib_batch_donor", "transfer_acc[human->mouse]",
                                    "transfer_bal_acc_both[mouse->human]", "transfer_dummy[human->mouse]",
                                    "knn_bal_acc[human]", "tree_mutual_nn"}
    summary = ev.metrics_json(pd.concat([records, records.assign(seed=1)]), dataset="toy", seeds=[0, 1])
    assert "SATURN" in summary["transfer_protocol"]
    assert set(summary["methods"]["good"]) == {"scib_total", "scib_bio", "scib_batch", "transfer_acc",
                                               "transfer_acc_both_species_labels", "tree_mutual_nn", "n_seeds"}
    assert summary["methods"]["good"]["n_seeds"] == 2
    assert set(summary["methods"]["good"]["transfer_acc"]["human->mouse"]) == {"accuracy", "balanced_accuracy",
                                                                              "ceiling", "dummy"}
    raw = ev.mean_scib_results([table, table])
    assert "Metric Type" in raw.columns and "silhouette_label" in raw.index


def test_summaries_mean_sd_and_verdict():
    rec = pd.DataFrame({"seed": [0, 1, 0, 1], "method": ["m", "m", "b", "b"], "scib_total": [0.6, 0.7, 0.5, 0.55]})
    ms = ev.mean_sd(rec)
    assert ms.loc["m", "scib_total"] == pytest.approx(0.65) and ms.loc["b", "scib_total_sd"] > 0
    verdict = ev.beats(rec, models=["m"], baselines=["b"], columns=["scib_total"])
    assert verdict["better_on_mean"].iloc[0] and verdict["clearly_better"].iloc[0]


def test_with_overrides_merges_nested_settings():
    base = {"macrogenes": {"pretrain_epochs": 20, "latent_dim": 64}, "uce": {"epochs": 4}}
    out = with_overrides(base, {"macrogenes": {"pretrain_epochs": 2}})
    assert out == {"macrogenes": {"pretrain_epochs": 2, "latent_dim": 64}, "uce": {"epochs": 4}}
    assert base["macrogenes"]["pretrain_epochs"] == 20


def test_knowledge_sources_are_configurable(knowledge_dir):
    know = load_knowledge(knowledge_dir, sources={"protein": "text_minilm", "text": "text_minilm"})
    assert know.embeddings["protein"]["mouse"].source == "text_minilm" and know.embeddings["protein"]["human"].dim == 384
    partial = load_knowledge(knowledge_dir, sources={"protein": "text_minilm"})
    assert partial.embeddings["text"]["human"].source == "text_minilm" and partial.embeddings["protein"]["human"].dim == 384
    with pytest.raises(ScpriorInputError, match="Unknown embedding set"):
        load_knowledge(knowledge_dir, sources={"esm": "esm2_650m"})
    with pytest.raises(ScpriorInputError, match="esm2_650m"):
        load_knowledge(knowledge_dir, sources={"protein": "esm2_650m"})


def test_goal_lines_say_met_missed_and_an_unreachable_direction():
    cols = {"scib_total": [0.66, 0.55, 0.63], "transfer_acc[human->mouse]": [0.95, 0.5, 0.87],
            "transfer_acc[mouse->human]": [0.86, 0.4, 0.60], "transfer_ceiling[human->mouse]": [0.99] * 3,
            "transfer_ceiling[mouse->human]": [0.887] * 3}
    summary = pd.DataFrame(cols, index=["unify_free", "saturn", "scvi"])
    lines = ev.goal_lines(summary, models=["unify_free", "saturn"])
    assert "unify_free" in lines[0] and "met" in lines[0] and "missed" not in lines[0]
    assert "**missed**" in lines[1]
    assert sum("cannot be met mouse->human" in ln and "0.887" in ln for ln in lines) == 1
    assert not any("cannot be met human->mouse" in ln for ln in lines)
    assert "matches or beats" in lines[-1]
    summary.loc["unify_free", "scib_total"] = 0.58  # best is now... still unify_free; goal missed, behind scVI
    lines = ev.goal_lines(summary, models=["unify_free", "saturn"])
    assert "**missed**" in lines[0] and "**behind**" in lines[-1]


def test_ablations_run_on_the_first_seeds_only_and_summaries_count_seeds():
    from scprior.tasks.integration.methods import ABLATIONS, seed_methods

    methods = ["pca", "unify_text", "unify", "uce"]
    assert "unify_text" in ABLATIONS
    plan = seed_methods([0, 1, 2], methods, ablation_seeds=1)
    assert plan[0] == methods and plan[1] == plan[2] == ["pca", "unify", "uce"]
    assert seed_methods([0, 1, 2], methods) == {s: methods for s in (0, 1, 2)}
    assert seed_methods([5, 6], methods, ablation_seeds=2)[6] == methods
    with pytest.raises(ScpriorInputError, match="ablation_seeds"):
        seed_methods([0, 1], methods, ablation_seeds=0)
    rec = pd.DataFrame({"seed": [0, 1, 2, 0], "method": ["m", "m", "m", "a"], "scib_total": [0.6, 0.7, 0.8, 0.5]})
    ms = ev.mean_sd(rec)
    assert ms.loc["m", "n_seeds"] == 3 and ms.loc["a", "n_seeds"] == 1 and np.isnan(ms.loc["a", "scib_total_sd"])


def test_uce_lines_report_sentence_stability():
    table = ev.uce_diagnostics_table({0: {"mean_pairwise_cosine": 0.2, "sentence_stability": {"1": 0.97, "4": 0.99},
                                          "train": {"cell_blind_auroc": 0.5, "decoder_gap": 0.2}},
                                      1: {"mean_pairwise_cosine": 0.3, "sentence_stability": {"1": 0.95, "4": 0.98},
                                          "train": {"cell_blind_auroc": 0.52, "decoder_gap": 0.1}}})
    lines = ev.uce_lines(table)
    line = [ln for ln in lines if "Sentence stability" in ln]
    assert len(line) == 1 and "0.960 with 1 sentence per" in line[0] and "0.985 with 4 sentences" in line[0]


def test_umaps_in_parallel_processes_equal_the_serial_ones():
    from scprior.plotting.integration import umap_coordinates_many

    rng = np.random.default_rng(0)
    embs = {"a": rng.normal(size=(60, 5)).astype(np.float32), "b": rng.normal(size=(60, 3)).astype(np.float32)}
    serial = umap_coordinates_many(embs, n_neighbors=5, seed=0, n_jobs=1)
    parallel = umap_coordinates_many(embs, n_neighbors=5, seed=0, n_jobs=2)
    assert list(parallel) == ["a", "b"]
    for k in embs:
        np.testing.assert_allclose(parallel[k], serial[k], atol=1e-5)


def test_a_method_on_fewer_seeds_is_labelled_so_and_never_clearly_better():
    rec = pd.DataFrame({"seed": [0, 1, 2, 0, 0, 1, 2], "method": ["b", "b", "b", "abl", "m", "m", "m"],
                        "scib_total": [0.5, 0.52, 0.51, 0.9, 0.6, 0.61, 0.62]})
    summary = ev.mean_sd(rec)
    names = ev.seed_labels(summary, {"abl": "Ablation", "m": "Model"})
    assert names == {"b": "b", "abl": "Ablation (1 of 3 seeds)", "m": "Model"}
    wins = ev.beats(rec, models=["abl", "m"], baselines=["b"], columns=["scib_total"]).set_index("model")
    assert wins.loc["abl", "better_on_mean"] and not wins.loc["abl", "clearly_better"]
    assert wins.loc["m", "clearly_better"]
