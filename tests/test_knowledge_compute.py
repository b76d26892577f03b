"""GO graph, sequence choice, k-mer embedding and gene documents, on small hand-checked inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprior.errors import ScpriorInputError
from scprior.knowledge.blastdb import BlastProteinDb, write_protein_db
from scprior.knowledge.go_graph import gene_term_matrix, jaccard_topk
from scprior.knowledge.protein_kmer import kmer_counts, protein_kmer_embedding
from scprior.knowledge.proteins import borrow_sequences, human_sequences
from scprior.knowledge.text import gene_documents


def _ann(pairs):
    return pd.DataFrame(pairs, columns=["symbol", "go_id"])


def test_jaccard_topk_by_hand():
    ann = _ann([("A", "t1"), ("A", "t2"), ("B", "t1"), ("B", "t2"), ("B", "t3"),
                ("C", "t3"), ("D", "t4"), ("E", "t1"), ("E", "t2")])
    mat, genes, terms = gene_term_matrix(ann)
    assert mat.shape == (5, 4) and genes.tolist() == ["A", "B", "C", "D", "E"]
    g = jaccard_topk(ann, k=2, min_weight=0.1)
    edges = {(a, b): w for a, b, w in g.itertuples(index=False)}
    assert edges[("A", "E")] == pytest.approx(1.0)
    assert edges[("A", "B")] == pytest.approx(2 / 3)
    assert edges[("C", "B")] == pytest.approx(1 / 3)
    assert ("A", "C") not in edges and not any(a == "D" for a, _ in edges)  # D shares nothing
    assert g.groupby("gene_a").size().max() <= 2 and not any(a == b for a, b in edges)
    # ties broken by name, same result whatever the block size
    g2 = jaccard_topk(ann, k=2, min_weight=0.1, block=2)
    pd.testing.assert_frame_equal(g.reset_index(drop=True), g2.reset_index(drop=True))
    assert jaccard_topk(ann, k=1, min_weight=0.5).query("gene_a == 'B'")["gene_b"].tolist() == ["A"]
    with pytest.raises(ValueError):
        jaccard_topk(ann, k=0)
    with pytest.raises(ScpriorInputError):
        jaccard_topk(pd.DataFrame({"gene": ["A"]}))


def test_sequence_choice_and_borrowing(tmp_path):
    write_protein_db(tmp_path / "db", [("P1|GO:1", "MKV"), ("P2|GO:1", "MKVLLA"), ("P3|GO:1", "MA"), ("Q9|GO:1", "MW")])
    uniprot = pd.DataFrame({"symbol": ["KLF1", "KLF1", "INS", "GATA1"], "uniprot": ["P1", "P2", "P3", "NOTINDB"]})
    human = human_sequences(BlastProteinDb(tmp_path / "db"), uniprot)
    assert human[["symbol", "uniprot", "sequence"]].values.tolist() == [["INS", "P3", "MA"], ["KLF1", "P2", "MKVLLA"]]
    assert not human["borrowed"].any()
    mouse = borrow_sequences(human, {"KLF1": "Klf1", "TP53": "Trp53"})
    assert mouse[["symbol", "sequence", "human_symbol"]].values.tolist() == [["Klf1", "MKVLLA", "KLF1"]]
    assert mouse["borrowed"].all()


def test_kmer_counts_exact():
    counts = kmer_counts(["ACA", "AXA"], ks=(1, 2)).toarray()
    aa = "ACDEFGHIKLMNPQRSTVWY"
    a, c = aa.index("A"), aa.index("C")
    assert counts.shape == (2, 20 + 400)
    assert counts[0, a] == 2 and counts[0, c] == 1
    assert counts[0, 20 + a * 20 + c] == 1 and counts[0, 20 + c * 20 + a] == 1
    assert counts[1, a] == 2 and counts[1, 20:].sum() == 0  # X breaks every 2-mer
    # k-mers never span two sequences
    assert kmer_counts(["A", "C"], ks=(2,)).sum() == 0
    with pytest.raises(ScpriorInputError):
        kmer_counts([])


def test_protein_kmer_embedding_groups_related_sequences():
    rng = np.random.default_rng(0)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    families = ["".join(rng.choice(aa, 300)) for _ in range(4)]
    seqs, fam = [], []
    for f, base in enumerate(families):
        for _ in range(5):
            s = np.array(list(base))
            mut = rng.random(len(s)) < 0.15
            s[mut] = rng.choice(aa, mut.sum())
            seqs.append("".join(s))
            fam.append(f)
    emb = protein_kmer_embedding(seqs, dim=8, seed=0)
    assert emb.shape == (20, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-5)
    sim = emb @ emb.T
    fam = np.array(fam)
    same = sim[(fam[:, None] == fam[None, :]) & ~np.eye(20, dtype=bool)].mean()
    other = sim[fam[:, None] != fam[None, :]].mean()
    assert same > other + 0.3
    np.testing.assert_array_equal(emb, protein_kmer_embedding(seqs, dim=8, seed=0))  # deterministic


def test_gene_documents():
    genes = pd.DataFrame({"symbol": ["KLF1", "ORPH"], "full_name": ["KLF transcription factor 1", ""],
                          "description": ["erythroid Kruppel-like factor; EKLF; third", ""]})
    ann = pd.DataFrame({"symbol": ["KLF1"] * 5, "ontology": ["MF", "MF", "BP", "BP", "CC"],
                        "term_name": ["DNA binding", "DNA binding", "erythrocyte differentiation", "zz process", "nucleus"]})
    docs = gene_documents(genes, ann, max_terms_per_ontology=1, max_designations=2)
    assert docs["KLF1"] == ("KLF1: KLF transcription factor 1. Function: DNA binding. Process: erythrocyte "
                            "differentiation. Location: nucleus. Other names: erythroid Kruppel-like factor; EKLF.")
    assert docs["ORPH"] == "ORPH: uncharacterised gene."
    assert gene_documents(genes)["KLF1"].startswith("KLF1: KLF transcription factor 1. Other names:")
    with pytest.raises(ScpriorInputError):
        gene_documents(pd.DataFrame({"symbol": ["A"]}))
