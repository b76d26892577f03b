"""Pretraining the UCE-style encoder from cell sources (backed h5ad, shard folders) one chunk at a time.

>>> res = pretrain_uce_stream({"human": "atlas.h5ad"}, protein, gene_tables, config=cfg, chunk_size=20_000)
>>> z = embed_to_npy(CellSource("atlas.h5ad"), uce_chunk_embedder(res.model, res.vocab, "human"), "z.npy")

The objective is :func:`scprior.models.uce.masked_expression_loss` on batches that UCE's own
:class:`~scprior.models.uce.SentenceData` collates (seeded sentence sampling, masked genes,
matched negatives), built per chunk: a chunk's genes are aligned to the vocabulary by symbol, as
``SentenceData`` does for an AnnData. The one thing ``SentenceData`` computes over all its cells,
the gene detection frequencies that bin the matched negatives, comes from one streamed pass over the
sources first (:func:`stream_detection`), so every chunk uses the whole data's bins. With one chunk
holding every cell and ``val_fraction=0`` this trains exactly as :func:`~scprior.models.uce.train_uce`.

Validation: a seeded fraction of cells by hash (:func:`scprior.models.stream_training.held_out`,
not ``train_uce``'s per-species permutation), their sentences and queries fixed by their own content
seeds as in ``train_uce``. Batches never mix chunks (so never species).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scprior.data.species import get_species
from scprior.data.stream import CellSource, Chunk
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.stream_training import ChunkBuilder, StreamBatches, as_sources
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.models.uce import (
    GeneVocabulary,
    SentenceData,
    UCEConfig,
    UCEModel,
    build_vocabulary,
    masked_expression_loss,
)
from scprior.runtime import seed_everything


@dataclass
class Detection:
    """One species' gene detection over a whole source: ``freq`` and ``bins`` per vocabulary gene of
    the species (as :func:`scprior.models.uce.detection_frequency`), from ``n_cells`` cells."""

    freq: np.ndarray
    bins: np.ndarray
    n_cells: int


def _vocab_columns(vocab: GeneVocabulary, species: str, var_names) -> tuple[np.ndarray, np.ndarray]:
    """(chunk columns with a token, their index among the species' vocabulary genes): by symbol,
    case-insensitive, as :class:`SentenceData` matches an AnnData's genes."""
    gv = vocab.genes[vocab.genes["species"] == get_species(species).name]
    pos = {s.upper(): i for i, s in enumerate(gv["symbol"])}
    names = [str(v).upper() for v in var_names]
    cols = np.asarray([i for i, n in enumerate(names) if n in pos], dtype=np.int64)
    return cols, np.asarray([pos[names[i]] for i in cols], dtype=np.int64)


def stream_detection(vocab: GeneVocabulary, sources: Mapping[str, CellSource], *, chunk_size: int,
                     n_bins: int = 50, progress: bool = False) -> dict[str, Detection]:
    """species -> :class:`Detection` from one pass over ``sources`` (one chunk in memory at a time).

    A gene counts as measured if any chunk's ``var_names`` has it; its frequency is the fraction of
    all the species' cells that express it; bins: equal numbers of measured genes by frequency rank
    (ties in the order the genes first appear as columns, as ``detection_frequency`` on one AnnData).
    """
    out = {}
    for species, src in sources.items():
        name = get_species(species).name
        if name not in vocab.chrom_tokens:
            raise ScpriorInputError(f"The vocabulary has no {name} genes; it covers {vocab.species}.")
        n_genes = int((vocab.genes["species"] == name).sum())
        expressed = np.zeros(n_genes, dtype=np.int64)
        measured = np.zeros(n_genes, dtype=bool)
        seen: list[np.ndarray] = []  # measured genes in first-seen column order (ties of the ranking)
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        n = 0
        chunks = src.chunks(chunk_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, total=src.n_chunks(chunk_size), desc=f"uce detection {name}", leave=False)
        for chunk in chunks:
            names = list(chunk.adata.var_names)
            key = hash(tuple(names))
            if key not in cache:
                cache[key] = _vocab_columns(vocab, name, names)
            cols, local = cache[key]
            csr = sp.csr_matrix(chunk.counts, dtype=np.float32)[:, cols].tocsr()
            if csr.nnz and csr.data.min() < 0:
                raise ScpriorInputError(f"{name} counts must be non-negative (chunk {chunk.index}); pass raw counts.")
            expressed[local] += np.bincount(csr.indices[csr.data > 0], minlength=len(cols))
            seen.append(local[~measured[local]])
            measured[local] = True
            n += chunk.n_obs
            del chunk, csr  # released before the next chunk is read
        if not measured.any():
            raise ScpriorInputError(f"None of the {name} source's genes has a protein token; check the symbols.")
        freq = np.zeros(n_genes, dtype=np.float64)
        bins = np.full(n_genes, -1, dtype=np.int64)
        local = np.concatenate(seen)
        freq[local] = expressed[local] / max(n, 1)
        rank = np.argsort(np.argsort(freq[local], kind="stable"), kind="stable")
        bins[local] = rank * int(n_bins) // len(local)
        out[name] = Detection(freq, bins, n)
    return out


def uce_chunk_builder(vocab: GeneVocabulary, config: UCEConfig, detection: Mapping[str, Detection], *,
                      mode: str) -> ChunkBuilder:
    """A :data:`~scprior.models.stream_training.ChunkBuilder` of UCE's sentences with queries:
    ``mode="train"`` (sentences drawn from torch's RNG, as ``train_uce``'s training cells) or
    ``"fixed"`` (content-seeded, as its held-out cells). The chunk's detection bins are replaced by
    the whole source's (``detection``, from :func:`stream_detection`)."""

    def build(species: str, chunk: Chunk, cells: np.ndarray):
        name = get_species(species).name
        data = SentenceData(vocab, {name: chunk.adata}, config, layer=None, mode=mode, seed=config.seed)
        det = detection[name]
        blk = data.blocks[0]
        blk["freq"], blk["bins"] = det.freq, det.bins
        data.token_freq[:] = 0.0
        data.token_freq[blk["tokens"][blk["local"]]] = det.freq[blk["local"]]
        return torch.utils.data.Subset(data, list(map(int, cells))), data.collate

    return build


@dataclass
class UCEStreamResult:
    """What :func:`pretrain_uce_stream` returns (embed with :func:`scprior.models.streaming.uce_chunk_embedder`)."""

    model: UCEModel
    vocab: GeneVocabulary
    train: TrainResult | None
    detection: dict[str, Detection]


def pretrain_uce_stream(
    sources: Mapping[str, CellSource | str | os.PathLike],
    protein: Mapping[str, GeneEmbeddings],
    gene_tables: Mapping[str, pd.DataFrame],
    *,
    config: UCEConfig | None = None,
    layer: str | None = "counts",
    chunk_size: int = 20_000,
    checkpoint: str | os.PathLike | None = None,
) -> UCEStreamResult:
    """Pretrain a UCE-style encoder (masked expression) on streamed cells through the one training loop.

    ``sources``: species -> :class:`CellSource` or a path (``.h5ad`` read backed, or a folder of
    shards; ``layer`` = the counts). ``protein``/``gene_tables``: as :func:`~scprior.models.uce.train_uce`.
    Held-out cells: ``config.val_fraction`` by hash; the best epoch is chosen on their loss (the
    training loss if none). Memory: one chunk of ``chunk_size`` cells and its sentences, plus the
    model. The checkpoint loads with :func:`~scprior.models.uce.load_uce`.
    """
    cfg = config or UCEConfig()
    if getattr(cfg, "gene_set", "all") != "all":
        raise ScpriorInputError("pretrain_uce_stream uses every gene with a token (gene_set='all'); restrict "
                                "gene_tables to the genes you want instead.")
    srcs = as_sources(sources, layer=layer)
    seed_everything(cfg.seed)
    vocab = build_vocabulary(protein, gene_tables, seed=cfg.token_seed)
    model = UCEModel(vocab.tokens, cfg)
    det = stream_detection(vocab, srcs, chunk_size=chunk_size, n_bins=cfg.frequency_bins, progress=cfg.progress)
    kw = dict(batch_size=cfg.batch_size, chunk_size=chunk_size, val_fraction=cfg.val_fraction, seed=cfg.seed)
    train = StreamBatches(srcs, uce_chunk_builder(vocab, cfg, det, mode="train"), part="train", shuffle=True, **kw)
    val = StreamBatches(srcs, uce_chunk_builder(vocab, cfg, det, mode="fixed"), part="val", shuffle=False, **kw)
    val = val if val.n_cells() else None
    extra = {"config": asdict(cfg), "vocab_genes": vocab.genes.to_dict(orient="list"),
             "chrom_tokens": {k: v.tolist() for k, v in vocab.chrom_tokens.items()}}
    result = None
    if cfg.epochs > 0:
        # the same training settings as train_uce: gradient clipping 1.0 unless the config sets
        # grad_clip, an lr warm-up only where the config asks for one
        warm = int(getattr(cfg, "warmup_steps", 0) or 0)
        tcfg = TrainConfig(max_epochs=cfg.epochs, lr=cfg.lr, optimizer="adamw", patience=cfg.patience,
                           seed=cfg.seed, device=cfg.device, progress=cfg.progress, desc="uce stream pretrain",
                           grad_clip=getattr(cfg, "grad_clip", 1.0) or None, **({"warmup_steps": warm} if warm else {}))
        result = fit(model, masked_expression_loss, train, val, tcfg, checkpoint=checkpoint, extra_state=extra)
    return UCEStreamResult(model=model, vocab=vocab, train=result, detection=det)


__all__ = ["Detection", "UCEStreamResult", "pretrain_uce_stream", "stream_detection", "uce_chunk_builder"]
