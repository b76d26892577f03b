"""Training the UCE-style encoder and GeneCompass from cell sources one chunk at a time: a backed
h5ad and a folder of shards whose genes are ordered differently train end to end; the loader never
holds more than one chunk's cells; runs are seeded; with one chunk holding every cell the streamed
recipes give exactly the in-memory recipes' models; held-out cells do not depend on the chunk size."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from integration_helpers import one_torch_thread, random_embeddings, random_gene_tables, two_species  # noqa: F401

from scprior.data.stream import CellSource
from scprior.errors import ScpriorInputError
from scprior.models.genecompass import (
    PretrainConfig,
    build_model,
    build_vocab,
    pretrain_genecompass,
)
from scprior.models.genecompass.model import GeneCompassConfig
from scprior.models.genecompass.stream import (
    build_vocab_stream,
    genecompass_chunk_builder,
    pretrain_genecompass_stream,
)
from scprior.models.stream_training import StreamBatches, held_out
from scprior.models.uce import UCEConfig, load_uce, train_uce
from scprior.models.uce_stream import pretrain_uce_stream, stream_detection, uce_chunk_builder

HERE = Path(__file__).resolve().parent
LIB = str(HERE.parent / "lib")

UCE = dict(d_model=16, nhead=2, d_hid=32, nlayers=1, output_dim=8, head_hidden=16, decoder_hidden=(8,),
           sample_size=16, n_positive=4, n_negative=4, batch_size=16, epochs=2, patience=5, progress=False,
           device="cpu")
GC = GeneCompassConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, top_k=12, priors=(),
                       dropout=0.0)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def data():
    return two_species(n_human=60, n_mouse=40, n_genes=30)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    """atlas.h5ad (human, 60 cells) and shards/ (the same cells in 2 shards of 30, the second with
    its genes in reverse order)."""
    root = tmp_path_factory.mktemp("stream_training")
    h = data["human"]
    h.write_h5ad(root / "atlas.h5ad")
    (root / "shards").mkdir()
    h[:30].copy().write_h5ad(root / "shards" / "part-0.h5ad")
    h[30:, ::-1].copy().write_h5ad(root / "shards" / "part-1.h5ad")
    return root


def _knowledge(data):
    return random_embeddings(data, dim=10, source="protein_kmer"), random_gene_tables(data)


class CountingSource:
    """A :class:`CellSource` that records every chunk it materialises and how many are alive."""

    def __init__(self, src: CellSource) -> None:
        self.src, self.n_obs, self.sizes = src, src.n_obs, src.sizes
        self.read: list[int] = []
        self.alive = 0
        self.max_alive_at_read = 0

    def n_chunks(self, chunk_size):
        return self.src.n_chunks(chunk_size)

    def boundaries(self, chunk_size):
        return self.src.boundaries(chunk_size)

    def _dead(self) -> None:
        self.alive -= 1

    def chunks(self, chunk_size, **kw):
        for chunk in self.src.chunks(chunk_size, **kw):
            self.max_alive_at_read = max(self.max_alive_at_read, self.alive)  # chunks still held when reading
            self.read.append(chunk.n_obs)
            self.alive += 1
            weakref.finalize(chunk.adata, self._dead)
            yield chunk
            del chunk


class LiveRows:
    """Wraps a chunk builder; counts the cells held by its datasets (and the objects their collate
    functions belong to) that are still alive."""

    def __init__(self, inner) -> None:
        self.inner, self.rows, self.peak, self.at_build = inner, 0, 0, 0

    def _release(self, n: int, left: list) -> None:
        left[0] -= 1
        if not left[0]:
            self.rows -= n

    def build(self, species, chunk, cells):
        self.at_build = max(self.at_build, self.rows)  # datasets still held when the next is built
        ds, collate = self.inner(species, chunk, cells)
        owners = {id(o): o for o in (ds, getattr(collate, "__self__", ds))}.values()
        n = max(len(o) for o in owners)
        self.rows += n
        left = [len(owners)]
        for o in owners:
            weakref.finalize(o, self._release, n, left)
        return ds, collate


def test_held_out_cells_do_not_depend_on_chunks_and_follow_the_fraction():
    pos = np.arange(20_000)
    whole = held_out(pos, 0.1, seed=3)
    parts = np.concatenate([held_out(pos[a:a + 777], 0.1, seed=3) for a in range(0, len(pos), 777)])
    np.testing.assert_array_equal(whole, parts)
    assert 0.09 < whole.mean() < 0.11
    assert (whole != held_out(pos, 0.1, seed=4)).mean() > 0.1
    assert (whole != held_out(pos, 0.1, seed=3, stream=1)).mean() > 0.1
    assert not held_out(pos, 0.0, seed=3).any()
    with pytest.raises(ScpriorInputError, match="val_fraction"):
        held_out(pos, 1.0, seed=0)


def test_stream_batches_hold_one_chunk_of_cells_at_a_time(data, files):
    """Every dataset a builder makes is alive only while its chunk's batches are drawn: at every
    batch the cells held in chunk datasets are at most one chunk, none is held when the next is
    built, and no chunk read from the source is alive when the next is read."""
    prot, tabs = _knowledge({"human": data["human"]})
    from scprior.models.uce import build_vocabulary

    vocab = build_vocabulary(prot, tabs)
    cfg = UCEConfig(**UCE)
    src = CountingSource(CellSource(files / "shards"))
    det = stream_detection(vocab, {"human": src}, chunk_size=16)
    vocab_gc = build_vocab([("human", data["human"])])
    gc = build_model(vocab_gc, {}, GC, seed=0)
    for inner in (uce_chunk_builder(vocab, cfg, det, mode="train"), genecompass_chunk_builder(gc)):
        live = LiveRows(inner)
        src.read.clear()
        batches = StreamBatches({"human": src}, live.build, batch_size=5, chunk_size=16, val_fraction=0.25, seed=1)
        seen = 0
        for batch in batches:
            live.peak = max(live.peak, live.rows)
            seen += len(batch[0])
        assert 0 < live.peak <= 16 and live.at_build == 0
        assert seen == batches.n_cells() and 30 < seen < 60  # the training part only
        assert sorted(src.read) == sorted([16, 14, 16, 14])  # every chunk read once, none across shards
        assert src.max_alive_at_read == 0  # the previous chunk was released before the next was read


def test_uce_trains_from_a_backed_file_and_from_shards_with_another_gene_order(data, files, tmp_path):
    h = {"human": data["human"]}
    prot, tabs = _knowledge(h)
    cfg = UCEConfig(**{**UCE, "val_fraction": 0.2})
    runs = {}
    for name in ("atlas.h5ad", "shards"):
        src = CountingSource(CellSource(files / name))
        res = pretrain_uce_stream({"human": src}, prot, tabs, config=cfg, chunk_size=30,
                                  checkpoint=tmp_path / f"{name}.pt")
        runs[name] = res
        assert res.train.epochs_run == 2 and all(np.isfinite(r["val_loss"]) for r in res.train.history)
        # one detection pass, then per epoch one pass for training cells and one for held-out cells
        assert sum(src.read) == 60 * (1 + 2 * 2) and max(src.read) <= 30 and src.max_alive_at_read == 0
        model, _ = load_uce(tmp_path / f"{name}.pt", res.vocab.tokens)
        assert _same_state(model, res.model.eval())
    # gene alignment per chunk: the same detection frequencies whatever the shards' gene order
    np.testing.assert_array_equal(runs["atlas.h5ad"].detection["human"].freq, runs["shards"].detection["human"].freq)


def test_genecompass_trains_from_shards_with_another_gene_order_as_from_the_file(data, files, tmp_path):
    """Rank encoding does not depend on the column order, so the shards (second one's genes
    reversed, chunk boundaries equal) give exactly the backed file's model."""
    vocab = build_vocab([("human", data["human"])])
    cfg = PretrainConfig(epochs=2, batch_size=8, val_fraction=0.2, progress=False, device="cpu")
    models = []
    for name in ("atlas.h5ad", "shards"):
        gc = build_model(vocab, {}, GC, seed=0)
        src = CountingSource(CellSource(files / name))
        res = pretrain_genecompass_stream(gc, {"human": src}, cfg, chunk_size=30, checkpoint=tmp_path / f"{name}.pt")
        assert res.epochs_run == 2 and np.isfinite(res.best_val_loss)
        assert sum(src.read) == 60 * 2 * 2 and max(src.read) <= 30 and src.max_alive_at_read == 0
        assert gc.info["pretrain_cells"] + gc.info["pretrain_val_cells"] == 60 and gc.info["pretrain_val_cells"] > 0
        models.append(gc)
        assert (tmp_path / f"{name}.pt").is_file()
    assert _same_state(models[0].model, models[1].model)


def test_genecompass_vocabulary_from_a_stream_equals_build_vocab(data, files):
    """The same genes, tokens, homolog keys and exact non-zero medians as build_vocab on the corpus
    in memory, from shards whose gene orders differ; a histogram cap of 3 puts most counts (up to
    16 here) in the one-by-one overflow path, the default cap none."""
    orth = {"gene1": "GENE1", "gene3": "GENE3"}
    for kw in ({}, {"max_genes_per_species": 10, "min_cells": 5}):
        ref = build_vocab([("human", data["human"]), ("mouse", data["mouse"])], orthologs=orth, **kw)
        for cap in (3, 256):
            got = build_vocab_stream({"human": files / "shards", "mouse": CellSource(data["mouse"])}, orthologs=orth,
                                     chunk_size=16, hist_cap=cap, **kw)
            assert got.symbols == ref.symbols and got.species == ref.species
            assert got.human_symbols == ref.human_symbols
            np.testing.assert_array_equal(got.medians, ref.medians)
    assert len(set(ref.medians)) > 2  # the medians differ between genes, so the check discriminates
    scaled = data["human"].copy()
    scaled.layers["counts"] = scaled.layers["counts"] * 0.5
    with pytest.raises(ScpriorInputError, match="not integers"):
        build_vocab_stream({"human": CellSource(scaled)})


def test_streamed_training_is_seeded_and_two_species_mix_in_the_chunk_order(data):
    prot, tabs = _knowledge(data)
    cfg = UCEConfig(**{**UCE, "val_fraction": 0.2})
    srcs = {k: CellSource(a) for k, a in data.items()}
    a = pretrain_uce_stream(srcs, prot, tabs, config=cfg, chunk_size=16)
    b = pretrain_uce_stream(srcs, prot, tabs, config=cfg, chunk_size=16)
    assert a.train.history == b.train.history and _same_state(a.model, b.model)
    c = pretrain_uce_stream(srcs, prot, tabs, config=UCEConfig(**{**UCE, "val_fraction": 0.2, "seed": 1}), chunk_size=16)
    assert not _same_state(a.model, c.model)
    vocab = build_vocab([(k, v) for k, v in data.items()])
    pcfg = PretrainConfig(epochs=2, batch_size=8, val_fraction=0.2, progress=False, device="cpu")
    g1, g2 = build_model(vocab, {}, GC, seed=0), build_model(vocab, {}, GC, seed=0)
    r1 = pretrain_genecompass_stream(g1, srcs, pcfg, chunk_size=16)
    r2 = pretrain_genecompass_stream(g2, srcs, pcfg, chunk_size=16)
    assert r1.history == r2.history and _same_state(g1.model, g2.model)
    # both species' chunks are visited each epoch, in a seeded order that changes per epoch
    sb = StreamBatches(srcs, lambda s, ch, cells: (torch.utils.data.TensorDataset(
        torch.full((len(cells),), ["human", "mouse"].index(s))), None), batch_size=100, chunk_size=16, val_fraction=0)
    e1, e2 = [int(b[0][0]) for b in sb], [int(b[0][0]) for b in sb]
    assert sorted(e1) == sorted(e2) == [0] * 4 + [1] * 3
    assert e1 != e2


def test_one_chunk_with_every_cell_equals_the_in_memory_recipes(data):
    """Exact: the same batches (one DataLoader draw per epoch from the same seeded generator),
    the same detection bins, the same sentences and masks, so the same weights. ``val_fraction=0``
    because the in-memory recipes split by a per-species permutation, the stream by hash."""
    h = {"human": data["human"]}
    prot, tabs = _knowledge(h)
    cfg = UCEConfig(**{**UCE, "val_fraction": 0.0})
    mem = train_uce(h, prot, tabs, config=cfg, diagnostics=0)
    st = pretrain_uce_stream({"human": CellSource(h["human"])}, prot, tabs, config=cfg, chunk_size=1000)
    assert mem.train.history == st.train.history and _same_state(mem.model, st.model)
    vocab = build_vocab([("human", h["human"])])
    pcfg = PretrainConfig(epochs=2, batch_size=8, val_fraction=0.0, progress=False, device="cpu")
    g1, g2 = build_model(vocab, {}, GC, seed=0), build_model(vocab, {}, GC, seed=0)
    r1 = pretrain_genecompass(g1, g1.encode(h["human"], "human"), pcfg)
    r2 = pretrain_genecompass_stream(g2, {"human": CellSource(h["human"])}, pcfg, chunk_size=1000)
    assert r1.history == r2.history and _same_state(g1.model, g2.model)
    # several chunks: the same cells, another batch order, so another (still finite) model
    g3 = build_model(vocab, {}, GC, seed=0)
    r3 = pretrain_genecompass_stream(g3, {"human": CellSource(h["human"])}, pcfg, chunk_size=16)
    assert r3.history != r1.history and np.isfinite(r3.best_val_loss)


def test_bad_stream_inputs_say_what_to_do(data):
    with pytest.raises(ScpriorInputError, match="No cell source"):
        pretrain_uce_stream({}, {}, {})
    with pytest.raises(ScpriorInputError, match="part"):
        StreamBatches({"human": CellSource(data["human"])}, lambda *a: None, batch_size=4, part="test")
    neg = data["human"].copy()
    neg.layers["counts"] = -neg.layers["counts"]
    prot, tabs = _knowledge({"human": neg})
    with pytest.raises(ScpriorInputError, match="non-negative"):
        pretrain_uce_stream({"human": CellSource(neg)}, prot, tabs, config=UCEConfig(**UCE))
    with pytest.raises(ScpriorInputError, match="does not exist"):
        pretrain_genecompass_stream(build_model(build_vocab([("human", data["human"])]), {}, GC), {"human": "/nope.h5ad"})


def test_ranks_shares_of_each_streamed_batch_make_the_single_process_batch(data, monkeypatch):
    """Under DDP every rank walks the same chunks and cell order and collates a contiguous share of
    each global batch: the shares of ranks 0 and 1, stacked, are the one-process batch, and their
    loss weights (local cells x 2 / global cells) sum to 2 (an empty share counts 0)."""
    import scprior.runtime as runtime
    from scprior.models.training import ShardedBatch

    vocab = build_vocab([("human", data["human"])])
    gc = build_model(vocab, {}, GC, seed=0)
    srcs = {"human": CellSource(data["human"])}

    def run(rank_world):
        monkeypatch.setattr(runtime, "dist_info", lambda: rank_world)
        return list(StreamBatches(srcs, genecompass_chunk_builder(gc), batch_size=7, chunk_size=16, val_fraction=0.2,
                                  seed=2))

    single, r0, r1 = run((0, 1)), run((0, 2)), run((1, 2))
    assert len(single) == len(r0) == len(r1) > 4
    assert all(isinstance(b, ShardedBatch) for b in r0 + r1)
    for whole, a, b in zip(single, r0, r1):
        assert a.weight + b.weight == pytest.approx(2.0)
        shares = [x.batch for x in (a, b) if x.weight > 0]  # a 1-cell batch: rank 1 repeats it at weight 0
        for k in range(3):
            torch.testing.assert_close(torch.cat([x[k] for x in shares]), whole[k], rtol=0, atol=0)


_DDP_WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np, torch
torch.set_num_threads(1)
from integration_helpers import two_species
from scprior.data.stream import CellSource
from scprior.models.genecompass import PretrainConfig, build_model, build_vocab
from scprior.models.genecompass.model import GeneCompassConfig
from scprior.models.genecompass.stream import pretrain_genecompass_stream
from scprior.runtime import dist_info, is_rank0

h = two_species(n_human=60, n_mouse=40, n_genes=30)["human"]
gc = build_model(build_vocab([("human", h)]), {{}},
                 GeneCompassConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, top_k=12,
                                   priors=(), dropout=0.0), seed=0)
cfg = PretrainConfig(epochs=2, batch_size=9, val_fraction=0.2, progress=False, device="cpu")
res = pretrain_genecompass_stream(gc, {{"human": CellSource(h)}}, cfg, chunk_size=16, checkpoint=sys.argv[1] + "/gc.pt")
rank, world = dist_info()
w = float(sum(p.detach().double().sum() for p in gc.model.parameters()))
with open(sys.argv[1] + f"/rank{{rank}}.json", "w") as fh:
    json.dump({{"world": world, "history": res.history, "weights": w}}, fh)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_genecompass_stream_trains_under_torchrun_with_two_processes(tmp_path):
    """Smoke run (2 gloo processes): both ranks walk the same chunks, so they stay in step (DDP
    would hang otherwise) and end with the same weights; rank 0 writes the checkpoint. Not equal to
    one process: each rank draws its share's training masks from its own RNG stream."""
    script = tmp_path / "train.py"
    script.write_text(_DDP_WORKER.format(tests=str(HERE)))
    env = {**os.environ, "PYTHONPATH": LIB, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["history"] == r1["history"] and len(r0["history"]) == 2  # losses are all-reduced
    assert r0["weights"] == pytest.approx(r1["weights"], rel=1e-6)
    assert (tmp_path / "gc.pt").is_file()
