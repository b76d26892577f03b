"""The knowledge checks on synthetic embeddings whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.tasks import knowledge_checks as kc


def _pair_embeddings(n=200, dim=16, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    human = GeneEmbeddings(np.array([f"G{i}" for i in range(n)]), base, "human", "t")
    mouse = GeneEmbeddings(np.array([f"g{i}x" for i in range(n)]), base + noise * rng.normal(size=(n, dim)), "mouse", "t")
    one2one = {f"G{i}": f"g{i}x" for i in range(n)}
    return human, mouse, one2one


def test_pair_auroc_separates_related_pairs_and_control_is_chance():
    human, mouse, one2one = _pair_embeddings()
    rel = pd.DataFrame({"a": list(one2one), "b": list(one2one.values())})
    res = kc.pair_auroc(human, mouse, rel, seed=0)
    assert res["auroc"] > 0.95 and abs(res["shuffled_auroc"] - 0.5) < 0.15
    assert res["n_pairs"] == 200 and res["mean_cos_related"] > res["mean_cos_random"]
    noise_only = GeneEmbeddings(mouse.symbols, np.random.default_rng(5).normal(size=mouse.matrix.shape), "mouse", "n")
    assert abs(kc.pair_auroc(human, noise_only, rel)["auroc"] - 0.5) < 0.15
    with pytest.raises(ScpriorInputError, match="at least 10"):
        kc.pair_auroc(human, mouse, rel.head(5))


def test_ortholog_retrieval_ranks():
    human, mouse, one2one = _pair_embeddings(noise=0.05)
    res = kc.ortholog_retrieval(human, mouse, one2one)
    assert res["top1"] > 0.95 and res["median_rank"] == 1 and res["n_candidates"] == 200
    far = kc.ortholog_retrieval(human, kc.shuffled(mouse, seed=3), one2one)
    assert far["top10"] < 0.2
    with pytest.raises(ScpriorInputError):
        kc.ortholog_retrieval(human, mouse, {"X": "y"})


def test_permuted_pairs_keep_genes_and_avoid_related():
    rel = pd.DataFrame({"a": [f"A{i}" for i in range(30)], "b": [f"B{i}" for i in range(30)]})
    rnd = kc.permuted_pairs(rel, seed=0)
    assert len(rnd) >= 25 and set(rnd.a) <= set(rel.a) and set(rnd.b) <= set(rel.b)
    assert not any(a[1:] == b[1:] for a, b in zip(rnd.a, rnd.b))


def test_function_check_finds_a_planted_signal():
    rng = np.random.default_rng(0)
    n = 400
    mat = rng.normal(size=(n, 10))
    members = [f"G{i}" for i in range(40)]
    mat[:40, 0] += 3.0  # members differ along one axis
    emb = GeneEmbeddings(np.array([f"G{i}" for i in range(n)]), mat, "human", "t")
    res = kc.function_check(emb, {"PLANTED": members, "RANDOM": [f"G{i}" for i in range(200, 240)],
                                  "TOO_SMALL": members[:5]}, min_members=20, seed=0)
    res = res.set_index("set")
    assert list(res.index) == ["PLANTED", "RANDOM"]
    assert res.loc["PLANTED", "auroc"] > 0.9 and res.loc["PLANTED", "shuffled_auroc"] < 0.7
    assert res.loc["RANDOM", "auroc"] < 0.75
    assert len(kc.function_check(emb, {"A": members, "B": members}, max_sets=1)) == 1


def test_shared_domain_pairs_and_baselines():
    domains = pd.DataFrame({"symbol": ["A", "B", "C", "D", "E"], "pfam_id": ["PF1", "PF1", "PF1", "PF2", "PF3"]})
    pairs = kc.shared_domain_pairs(domains, max_family_size=3)
    assert pairs.values.tolist() == [["A", "B"], ["A", "C"], ["B", "C"]]
    assert kc.shared_domain_pairs(domains, max_family_size=2).empty
    sym = kc.symbol_ngram_embeddings({"human": ["KLF1", "KLF2", "INS", "GCG", "TP53", "ACTB"],
                                      "mouse": ["Klf1", "Ins2", "Trp53"]}, dim=4)
    assert sym["human"].dim == 4 and sym["mouse"].source == "baseline_symbol_ngram"
    np.testing.assert_allclose(sym["human"].lookup(["KLF1"])[0], sym["mouse"].lookup(["Klf1"])[0])  # one shared space
    aa = kc.aa_composition_embedding(pd.DataFrame({"symbol": ["A", "B"], "sequence": ["AAAC", "CCCA"]}), "human")
    assert aa.dim == 20 and np.allclose(aa.matrix.sum(axis=0), 0)


def test_gene_family_labels():
    fam = kc.gene_family(["RPL3", "Rps6", "KRT14", "OR2A1", "Zfp36", "ZNF91", "SLC2A2", "HLA-A", "H2-K1", "ACTB"])
    assert fam.tolist() == ["ribosomal protein", "ribosomal protein", "keratin", "olfactory receptor", "zinc finger (ZNF)",
                            "zinc finger (ZNF)", "solute carrier", "HLA / H2", "HLA / H2", ""]
