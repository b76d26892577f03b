"""The knowledge build on the real pinned files (the session fixture ``knowledge_dir``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scprior.errors import ScpriorInputError
from scprior.knowledge import build, store


def test_tables_are_complete_and_keep_their_contract(knowledge_dir):
    human = store.load_gene_table("human", knowledge_dir)
    mouse = store.load_gene_table("mouse", knowledge_dir)
    for table in (human, mouse):
        assert list(table.columns[:10]) == store.COLUMNS["genes"]
        assert table["symbol"].is_unique
        assert set(table["strand"]) <= {"+", "-", ""}
        placed = table[table["start"] > 0]
        assert (placed["end"] >= placed["start"]).all() and (placed["chromosome"] != "").all()
    assert (human.gene_type == "protein-coding").sum() > 19000 and len(mouse) > 20000
    ins = human.set_index("symbol").loc["INS"]
    assert (ins.chromosome, ins.strand, ins.has_protein, ins.protein_borrowed) == ("11", "-", True, False)
    assert not human["protein_borrowed"].any()
    assert (mouse["has_protein"] == mouse["protein_borrowed"]).all() and mouse["has_protein"].sum() > 10000

    orth = store.load_orthologs(knowledge_dir)
    one = orth[orth.homology_type == "one2one"]
    assert set(orth.homology_type) == {"one2one", "one2many", "many2many"}
    assert one.human.is_unique and one.mouse.is_unique and len(one) > 15000

    ann = store.load_go_annotations("human", knowledge_dir)
    assert set(ann.ontology) == {"BP", "MF", "CC"} and (ann.term_name != "").mean() > 0.99
    terms = store.load_go_terms(knowledge_dir)
    assert terms.go_id.is_unique and set(ann.go_id) <= set(terms.go_id)
    graph = store.load_go_graph("human", knowledge_dir)
    manifest = store.load_manifest(knowledge_dir)
    k = manifest["config"]["go_graph_k"]
    assert graph.groupby("gene_a").size().max() <= k
    assert graph.weight.between(manifest["config"]["go_graph_min_weight"], 1.0).all()
    assert (graph.gene_a != graph.gene_b).all()

    reg = store.load_regulon(knowledge_dir)
    assert len(reg) > 100000 and reg.tf.nunique() > 1000
    prot = store.load_protein_sequences("human", knowledge_dir)
    assert prot.symbol.is_unique and prot.sequence.str.fullmatch(r"[A-Z]+").all()
    assert prot.set_index("symbol").loc["INS", "sequence"].startswith("MALWMRLLPLLALLALWGPDPAAA")
    mprot = store.load_protein_sequences("mouse", knowledge_dir)
    assert mprot.borrowed.all() and set(mprot.symbol) <= set(mouse.symbol)
    assert set(store.load_gene_sets("human", knowledge_dir)) == set(store.load_gene_sets("mouse", knowledge_dir))
    assert len(store.load_protein_domains("human", knowledge_dir)) > 10000
    assert manifest["rows"]["genes_human"] == len(human)
    # run-to-run timings live outside the output folder so its DVC hash is reproducible
    assert not {"timings_s", "cpu_s", "rates"} & set(manifest)
    assert not any("seconds" in entry for entry in manifest["embeddings"].values())


def test_quick_embeddings_cover_the_quick_gene_set(knowledge_dir):
    assert store.available_embeddings(knowledge_dir) == [
        ("protein_kmer", "human"), ("protein_kmer", "mouse"), ("text_minilm", "human"), ("text_minilm", "mouse")]
    text_h = store.load_embeddings("text_minilm", "human", knowledge_dir)
    text_m = store.load_embeddings("text_minilm", "mouse", knowledge_dir)
    prot_h = store.load_embeddings("protein_kmer", "human", knowledge_dir)
    prot_m = store.load_embeddings("protein_kmer", "mouse", knowledge_dir)
    assert text_h.dim == 384 and prot_h.dim == store.load_manifest(knowledge_dir)["config"]["protein_dim"]
    assert 2000 <= len(text_h) < 15000 and 2000 <= len(text_m) < 15000
    assert text_h.provenance["restricted"] and prot_m.provenance["borrowed"]
    np.testing.assert_allclose(np.linalg.norm(text_h.matrix, axis=1), 1, rtol=1e-4)
    # a mouse protein vector is its human ortholog's
    one2one = store.one2one_orthologs(knowledge_dir)
    pairs = [(h, m) for h, m in one2one.items() if h in prot_h and m in prot_m][:50]
    assert pairs
    for h, m in pairs:
        np.testing.assert_array_equal(prot_h.lookup([h])[0], prot_m.lookup([m])[0])
    # text of orthologs is closer than text of random pairs
    pairs = [(h, m) for h, m in one2one.items() if h in text_h and m in text_m]
    a = text_h.lookup([h for h, _ in pairs])[0]
    b = text_m.lookup([m for _, m in pairs])[0]
    assert np.mean(np.sum(a * b, axis=1)) > np.mean(np.sum(a * np.roll(b, 7, axis=0), axis=1)) + 0.2


def test_build_without_raw_files_says_how_to_fetch(tmp_path):
    with pytest.raises(ScpriorInputError, match="python -m scprior.data.fetch"):
        build.build_knowledge(tmp_path / "raw", tmp_path / "out", progress=False)
    assert build.main(["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--quiet"]) == 1


def test_genes_file_formats_and_config(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps({"Homo sapiens": ["KLF1"], "mouse": ["Klf1"]}))
    assert build.read_genes_file(tmp_path / "g.json") == {"human": ["KLF1"], "mouse": ["Klf1"]}
    (tmp_path / "g.tsv").write_text("human\tKLF1\nmouse\tKlf1\nhuman\tGATA1\n")
    assert build.read_genes_file(tmp_path / "g.tsv") == {"human": ["KLF1", "GATA1"], "mouse": ["Klf1"]}
    assert build.KnowledgeConfig.from_dict({"go_graph_k": 5}).go_graph_k == 5
    with pytest.raises(ScpriorInputError, match="unknown keys"):
        build.KnowledgeConfig.from_dict({"go_graph_kk": 5})


def test_params_yaml_knowledge_section_matches_the_config(root):
    from scprior.config import section

    assert set(section("knowledge", root / "params.yaml")) == set(build.KnowledgeConfig.__dataclass_fields__)


def test_text_vectors_match_an_in_process_embedding(knowledge_dir):
    """The build embeds text in worker processes; the same documents embedded here agree."""
    from scprior.knowledge.text import embed_texts, gene_documents

    cfg = store.load_manifest(knowledge_dir)["config"]
    text_h = store.load_embeddings("text_minilm", "human", knowledge_dir)
    genes = store.load_gene_table("human", knowledge_dir)
    pick = genes[genes.symbol.isin(list(text_h.symbols[:: max(1, len(text_h) // 20)]))]
    docs = gene_documents(pick, store.load_go_annotations("human", knowledge_dir),
                          max_terms_per_ontology=cfg["text_max_terms"], max_designations=cfg["text_max_designations"])
    mine = embed_texts(docs.tolist(), max_seq_length=cfg["text_max_seq_length"], progress=False)
    np.testing.assert_allclose(mine, text_h.lookup(docs.index.tolist())[0], atol=1e-4)
