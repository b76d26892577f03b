"""The knowledge-folder loaders, on tiny tables written in the test (no build needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scprior.errors import ScpriorInputError
from scprior.knowledge import store
from scprior.knowledge.embeddings import GeneEmbeddings


def _genes(species: str) -> pd.DataFrame:
    sym = ["KLF1", "GATA1", "TP53"] if species == "human" else ["Klf1", "Gata1", "Trp53"]
    return pd.DataFrame({
        "symbol": sym, "entrez_id": [10661, 2623, 7157], "full_name": ["KLF transcription factor 1"] * 3,
        "description": ["", "", ""], "chromosome": ["19", "X", "17"], "start": [1, 2, 3], "end": [10, 20, 30],
        "strand": ["-", "+", "-"], "has_protein": [True, True, False], "protein_borrowed": [False, species == "mouse", False],
    })


@pytest.fixture
def tiny_dir(tmp_path):
    for sp_ in ("human", "mouse"):
        store.write_table(_genes(sp_), "genes", tmp_path, sp_)
        store.write_table(pd.DataFrame({"symbol": ["KLF1"], "uniprot": ["Q13351"], "sequence": ["MATAETALPS"],
                                        "borrowed": [sp_ == "mouse"]}), "proteins", tmp_path, sp_)
    store.write_table(pd.DataFrame({"human": ["KLF1", "GATA1"], "mouse": ["Klf1", "Gata1"],
                                    "homology_type": ["one2one", "one2many"], "confidence": [1.0, 0.0]}),
                      "orthologs", tmp_path)
    store.write_table(pd.DataFrame({"go_id": ["GO:0003700"], "name": ["DNA-binding TF activity"],
                                    "definition": ["..."], "ontology": ["MF"]}), "go_terms", tmp_path)
    store.write_table(pd.DataFrame({"symbol": ["KLF1"], "go_id": ["GO:0003700"], "ontology": ["MF"],
                                    "evidence": ["IDA"], "term_name": ["DNA-binding TF activity"]}),
                      "go_annotations", tmp_path, "human")
    store.write_table(pd.DataFrame({"gene_a": ["KLF1"], "gene_b": ["GATA1"], "weight": [0.5]}), "go_graph", tmp_path, "human")
    store.write_table(pd.DataFrame({"tf": ["GATA1"], "target": ["KLF1"]}), "regulon", tmp_path)
    store.write_table(pd.DataFrame({"species": ["human", "human", "mouse"], "collection": ["hallmark"] * 3,
                                    "set_name": ["HEME", "HEME", "HEME"], "symbol": ["KLF1", "GATA1", "Klf1"]}),
                      "gene_sets", tmp_path)
    return tmp_path


def test_table_loaders_return_contract_columns(tiny_dir):
    for sp_ in ("human", "mouse", "Mus musculus"):
        genes = store.load_gene_table(sp_, tiny_dir)
        assert list(genes.columns[:10]) == store.COLUMNS["genes"]
    assert store.load_gene_table("mouse", tiny_dir)["symbol"].tolist() == ["Klf1", "Gata1", "Trp53"]
    assert store.load_orthologs(tiny_dir).shape == (2, 4)
    assert store.one2one_orthologs(tiny_dir) == {"KLF1": "Klf1"}
    assert store.load_go_annotations("human", tiny_dir)["ontology"].tolist() == ["MF"]
    assert store.load_go_terms(tiny_dir)["go_id"].tolist() == ["GO:0003700"]
    assert store.load_go_graph("human", tiny_dir)["weight"].tolist() == [0.5]
    assert store.load_regulon(tiny_dir)[["tf", "target"]].values.tolist() == [["GATA1", "KLF1"]]
    assert store.load_protein_sequences("mouse", tiny_dir)["borrowed"].tolist() == [True]
    assert store.load_gene_sets("human", tiny_dir) == {"HEME": ["KLF1", "GATA1"]}
    assert store.load_gene_sets("mouse", tiny_dir, collection="hallmark") == {"HEME": ["Klf1"]}


def test_missing_table_says_how_to_build(tmp_path):
    with pytest.raises(ScpriorInputError, match="dvc repro knowledge"):
        store.load_gene_table("human", tmp_path)
    with pytest.raises(ScpriorInputError, match="dvc repro knowledge"):
        store.load_manifest(tmp_path)


def test_mouse_go_and_unknown_species_fail_clearly(tiny_dir):
    with pytest.raises(ScpriorInputError, match="only human GO"):
        store.load_go_annotations("mouse", tiny_dir)
    with pytest.raises(ScpriorInputError, match="only human GO"):
        store.load_go_graph("mouse", tiny_dir)
    with pytest.raises(ScpriorInputError, match="No genes table for species 'zebrafish'.*Supply the file"):
        store.load_gene_table("zebrafish", tiny_dir)
    with pytest.raises(ScpriorInputError, match="No 'text_minilm' gene embeddings for species 'zebrafish': supply"):
        store.load_embeddings("text_minilm", "zebrafish", tiny_dir)


def test_table_with_wrong_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        store.write_table(pd.DataFrame({"tf": ["A"]}), "regulon", tmp_path)
    (tmp_path / "regulon.parquet").parent.mkdir(exist_ok=True)
    pd.DataFrame({"tf": ["A"]}).to_parquet(tmp_path / "regulon.parquet")
    with pytest.raises(ScpriorInputError, match="lacks columns"):
        store.load_regulon(tmp_path)


def test_embeddings_round_trip_and_listing(tmp_path):
    assert store.available_embeddings(tmp_path) == []
    rng = np.random.default_rng(0)
    emb = GeneEmbeddings(np.array(["Klf1", "Gata1"]), rng.normal(size=(2, 5)), "mouse", "text_minilm",
                         {"model": "MiniLM", "n": 2})
    path = store.save_embeddings(emb, tmp_path)
    assert path.name == "text_minilm_mouse.npz"
    back = store.load_embeddings("text_minilm", "Mus musculus", tmp_path)
    assert back.species == "mouse" and back.source == "text_minilm"
    assert back.symbols.tolist() == ["Klf1", "Gata1"]
    np.testing.assert_array_equal(back.matrix, emb.matrix)
    assert back.provenance == {"model": "MiniLM", "n": 2}
    store.save_embeddings(GeneEmbeddings(np.array(["KLF1"]), np.ones((1, 3)), "human", "protein_kmer"), tmp_path)
    assert store.available_embeddings(tmp_path) == [("protein_kmer", "human"), ("text_minilm", "mouse")]
    with pytest.raises(ScpriorInputError, match="available:.*protein_kmer"):
        store.load_embeddings("esm2", "human", tmp_path)
