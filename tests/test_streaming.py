"""Cells streamed chunk by chunk (backed h5ad, shards), gene alignment per chunk, and the resumable
embedding writer: a run killed with SIGKILL resumes without recomputing finished chunks and gives
the same array as an uninterrupted run; the three models' chunk embedders equal their whole-data embed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from integration_helpers import one_torch_thread, random_embeddings, random_gene_tables, two_species  # noqa: F401

from conftest import make_counts_adata
from scprior.data.stream import CellSource, GeneAligner, write_shards
from scprior.errors import ScpriorInputError
from scprior.models.streaming import (
    embed_to_npy,
    genecompass_chunk_embedder,
    macrogene_chunk_embedder,
    uce_chunk_embedder,
)

LIB = str(Path(__file__).resolve().parents[1] / "lib")


def _atlas(n=230, genes=40, seed=0):
    a = make_counts_adata(n, genes, seed=seed)
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(a.X.shape, dtype=np.float32)  # X is not the counts: the stream must read the layer
    return a


def test_backed_file_and_shards_stream_the_same_cells_in_order(tmp_path):
    a = _atlas()
    a.write_h5ad(tmp_path / "atlas.h5ad")
    write_shards(a, tmp_path / "shards", cells_per_shard=100)
    full = a.layers["counts"].toarray()
    for src in (CellSource(tmp_path / "atlas.h5ad"), CellSource(tmp_path / "shards"), CellSource(a)):
        assert src.n_obs == 230
        chunks = list(src.chunks(64))
        assert max(c.n_obs for c in chunks) <= 64
        np.testing.assert_array_equal(np.vstack([c.counts.toarray() for c in chunks]), full)
        assert [c.start for c in chunks] == sorted(c.start for c in chunks)
        assert list(np.concatenate([c.adata.obs_names for c in chunks])) == list(a.obs_names)
    shards = CellSource(tmp_path / "shards")
    assert shards.boundaries(64)[:3] == [(0, 0, 64), (0, 64, 100), (1, 0, 64)]  # never across shards
    assert [c.index for c in shards.chunks(64, skip={0, 2})] == [1, 3, 4]
    with pytest.raises(ScpriorInputError, match="no 'layers/raw'"):
        CellSource(tmp_path / "atlas.h5ad", layer="raw")


def test_gene_aligner_maps_reordered_and_missing_genes():
    x = sp.csr_matrix(np.array([[1, 2, 3], [0, 5, 0]], dtype=np.float32))
    al = GeneAligner(["C", "a", "Z"])
    out = al.align(x, ["A", "B", "c"]).toarray()
    np.testing.assert_array_equal(out, [[3, 1, 0], [0, 0, 0]])
    with pytest.raises(ScpriorInputError, match="No gene"):
        al.align(x, ["Q", "R", "S"])


_KILLED_RUN = """
import sys, time
import numpy as np
from scprior.data.stream import CellSource
from scprior.models.streaming import embed_to_npy
W = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
def fn(chunk):
    time.sleep(0.25)
    return np.log1p(chunk.counts.toarray()) @ W
embed_to_npy(CellSource(sys.argv[1]), fn, sys.argv[2], chunk_size=20)
"""


def test_embedding_survives_a_kill_and_resumes_without_recomputing(tmp_path):
    a = _atlas()
    a.write_h5ad(tmp_path / "atlas.h5ad")
    w = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    calls = []

    def fn(chunk):
        calls.append(chunk.index)
        return np.log1p(chunk.counts.toarray()) @ w

    src = CellSource(tmp_path / "atlas.h5ad")
    ref = np.array(embed_to_npy(src, fn, tmp_path / "ref.npy", chunk_size=20))
    assert ref.shape == (230, 5) and len(calls) == 12
    assert not (tmp_path / "ref.npy.progress.json").exists()

    out = tmp_path / "z.npy"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN))
    env = {**os.environ, "PYTHONPATH": LIB, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "atlas.h5ad"), str(out)], env=env)
    record = tmp_path / "z.npy.progress.json"
    deadline = time.time() + 45
    try:
        while time.time() < deadline:
            if record.exists():
                try:
                    if len(json.loads(record.read_text())["done"]) >= 3:
                        break
                except (json.JSONDecodeError, KeyError):
                    pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    done = set(json.loads(record.read_text())["done"])
    assert 3 <= len(done) < 12 and not out.exists()
    calls.clear()
    z = np.array(embed_to_npy(src, fn, out, chunk_size=20))
    assert set(calls).isdisjoint(done) and len(calls) == 12 - len(done)
    np.testing.assert_array_equal(z, ref)
    assert not record.exists() and not (tmp_path / "z.npy.partial").exists()


def test_resume_refuses_a_record_of_another_run(tmp_path):
    a = _atlas()
    src = CellSource(a)
    (tmp_path / "z.npy.progress.json").write_text(json.dumps({"source": "x", "n_obs": 1, "chunk_size": 3, "done": []}))
    np.lib.format.open_memmap(tmp_path / "z.npy.partial", mode="w+", dtype=np.float32, shape=(1, 2))
    with pytest.raises(ScpriorInputError, match="another run"):
        embed_to_npy(src, lambda c: np.zeros((c.n_obs, 2)), tmp_path / "z.npy", chunk_size=20)


def test_chunk_embedders_equal_each_models_whole_data_embedding(tmp_path):
    from scprior.models.genecompass import build_model, build_vocab
    from scprior.models.genecompass.model import GeneCompassConfig
    from scprior.models.macrogene_integrator import MacrogeneIntegratorConfig, embed, integrate
    from scprior.models.uce import UCEConfig, embed_cells, train_uce

    adatas = two_species(n_human=50, n_mouse=40, n_genes=30)
    human = adatas["human"][:, ::-1].copy()  # another gene order than the model's axis
    src = CellSource(human)
    # macrogene integrator
    cfg = MacrogeneIntegratorConfig(n_macrogenes=6, hidden_dim=8, latent_dim=4, pretrain_epochs=1, metric_epochs=0,
                                    label_mode="none", progress=False, device="cpu")
    res = integrate(adatas, {"protein": random_embeddings(adatas, dim=8, source="protein_kmer")}, config=cfg)
    z = embed_to_npy(src, macrogene_chunk_embedder(res.model, res.axis, "human"), tmp_path / "mg.npy", chunk_size=17)
    np.testing.assert_allclose(z, embed(res.model, res.axis, human, "human"), atol=1e-5)
    # UCE-style encoder
    tiny = UCEConfig(d_model=16, nhead=2, d_hid=32, nlayers=1, output_dim=8, head_hidden=16, decoder_hidden=(8,),
                     sample_size=16, n_positive=4, n_negative=4, batch_size=16, epochs=0, progress=False,
                     device="cpu")
    u = train_uce(adatas, random_embeddings(adatas, dim=10, source="protein_kmer"), random_gene_tables(adatas),
                  config=tiny, diagnostics=0)
    z = embed_to_npy(src, uce_chunk_embedder(u.model, u.vocab, "human"), tmp_path / "uce.npy", chunk_size=17)
    np.testing.assert_allclose(z, embed_cells(u.model, u.vocab, {"human": human}), atol=1e-5)
    # GeneCompass
    corpus = [("human", adatas["human"]), ("mouse", adatas["mouse"])]
    vocab = build_vocab(corpus)
    gcfg = GeneCompassConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, top_k=12,
                             priors=(), dropout=0.0)
    gc = build_model(vocab, {}, gcfg, seed=0)
    z = embed_to_npy(src, genecompass_chunk_embedder(gc, "human"), tmp_path / "gc.npy", chunk_size=17)
    np.testing.assert_allclose(z, gc.embed(gc.encode(human, "human")), atol=1e-5)


def test_gene_aligner_keeps_empty_rows_and_drops_unknown_genes_per_row():
    x = sp.csr_matrix(np.array([[0, 0, 0], [1, 0, 2], [0, 3, 0], [0, 0, 0]], dtype=np.float32))
    out = GeneAligner(["c", "A"]).align(x, ["A", "B", "C"])
    np.testing.assert_array_equal(out.toarray(), [[0, 0], [2, 1], [0, 0], [0, 0]])
