"""GeneCompass masked-gene pretraining from cell sources (backed h5ad, shard folders), one chunk at a time.

>>> result = pretrain_genecompass_stream(gc, {"human": "atlas.h5ad", "mouse": "mouse_shards/"}, config)

Cells are rank-encoded with the model's own vocabulary and medians (token ids looked up once per
distinct ``var_names``, so shards may order or subset their genes differently), exactly as
:meth:`GeneCompass.encode` would encode those cells; batches of ``(ids, values, species)`` go
through :func:`scprior.models.genecompass.model.mlm_loss_fn` in the one training loop, as in
:func:`~scprior.models.genecompass.api.pretrain_genecompass`. With one chunk holding every cell and
``val_fraction=0`` the two give the same model.

Cells are encoded batch by batch (under ``torchrun`` each rank encodes only its share).
Validation: a seeded fraction of cells by hash (:func:`scprior.models.stream_training.held_out`)
with a fixed mask per batch (seeded by the seed, source, chunk and batch; validation batches are the
same every epoch), so their loss is comparable across epochs. The vocabulary (and its medians) comes with ``gc``: build it on the corpus or a
sample of it (:func:`~scprior.models.genecompass.tokens.build_vocab`), or stream it
(:func:`build_vocab_stream`: the same vocabulary and exact medians from one pass, for integer counts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np
import torch

from scprior.data.species import get_species
from scprior.data.stream import CellSource, Chunk
from scprior.errors import ScpriorInputError
from scprior.models.genecompass.api import GeneCompass, PretrainConfig
from scprior.models.genecompass.encoding import random_mask_np, rank_encode
from scprior.models.genecompass.model import mlm_loss_fn
from scprior.models.genecompass.tokens import GeneVocab, selected_genes
from scprior.models.stream_training import ChunkBuilder, StreamBatches, as_sources
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import pick_device


def column_lookup(gc: GeneCompass):
    """``(species, var_names) -> (token id per column (-1: not in the vocabulary), median per column)``
    with ``gc``'s vocabulary, cached per distinct ``var_names`` (shards may order genes differently)."""
    cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    med_all = gc.vocab.token_medians()

    def lookup(species: str, var_names) -> tuple[np.ndarray, np.ndarray]:
        names = [str(v) for v in var_names]
        key = (species, hash(tuple(names)))
        if key not in cache:
            tokens = gc.vocab.column_tokens(names, species)
            cache[key] = (tokens, np.where(tokens >= 0, med_all[np.maximum(tokens, 0)], 1.0))
        return cache[key]

    return lookup


class EncodedRows(torch.utils.data.Dataset):
    """Cells (rows of ``counts``, columns with token ids ``tokens`` and ``medians``) rank-encoded
    batch by batch in :meth:`collate` as :meth:`GeneCompass.encode` encodes them (so under DDP each
    rank encodes only its share): batches ``(ids, values, species)`` plus, with ``mask_fraction``,
    a fixed mask seeded by ``seed`` and the batch's first row (validation batches repeat every epoch)."""

    def __init__(self, counts, tokens: np.ndarray, medians: np.ndarray, species: str, *, top_k: int,
                 mask_fraction: float | None = None, seed: Sequence[int] = (0,)) -> None:
        self.counts, self.tokens, self.medians, self.species = counts.tocsr(), tokens, medians, species
        self.top_k, self.mask_fraction, self.seed = int(top_k), mask_fraction, [int(s) for s in seed]

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx) -> tuple[torch.Tensor, ...]:
        idx = np.asarray(idx, dtype=np.int64)
        enc = rank_encode(self.counts[idx], self.tokens, self.medians, self.species, top_k=self.top_k)
        arrays = [enc.input_ids, enc.values, enc.species]
        if self.mask_fraction is not None:
            arrays.append(random_mask_np(enc.input_ids, self.mask_fraction, seed=[*self.seed, int(idx[0])]))
        return tuple(torch.as_tensor(a) for a in arrays)


def genecompass_chunk_builder(gc: GeneCompass, *, mask_fraction: float | None = None, seed: int = 0,
                              sources: Mapping[str, CellSource] | None = None) -> ChunkBuilder:
    """A :data:`~scprior.models.stream_training.ChunkBuilder` of :class:`EncodedRows`; with
    ``mask_fraction`` fixed validation masks (seeded by ``seed``, the source's number in ``sources``,
    the chunk's first cell and the batch)."""
    lookup = column_lookup(gc)
    number = {get_species(k).name: i for i, k in enumerate(sources or {})}

    def build(species: str, chunk: Chunk, cells: np.ndarray):
        name = get_species(species).name
        tokens, med = lookup(name, chunk.adata.var_names)
        data = EncodedRows(chunk.counts[cells], tokens, med, name, top_k=gc.config.top_k, mask_fraction=mask_fraction,
                           seed=(int(seed), number.get(name, 0), int(chunk.start)))
        return data, data.collate

    return build


class _Values:
    """Per-gene multiset of non-zero integer counts: a histogram of 1..``cap`` plus the larger values."""

    def __init__(self, n_genes: int, cap: int) -> None:
        self.cap = int(cap)
        self.hist = np.zeros((n_genes, self.cap), dtype=np.int64)  # column v-1 counts value v
        self.big: list[np.ndarray] = []  # (gene, value) pairs above cap

    def add(self, genes: np.ndarray, values: np.ndarray) -> None:
        small = values <= self.cap
        flat = genes[small] * self.cap + values[small].astype(np.int64) - 1
        self.hist += np.bincount(flat, minlength=self.hist.size).reshape(self.hist.shape)
        if not small.all():
            self.big.append(np.stack([genes[~small], values[~small].astype(np.int64)], axis=1))

    def medians(self, genes: np.ndarray) -> np.ndarray:
        """Non-zero median of each gene in ``genes`` (as ``np.median`` of its values); NaN if none."""
        big = np.concatenate(self.big) if self.big else np.zeros((0, 2), dtype=np.int64)
        out = np.full(len(genes), np.nan)
        for k, g in enumerate(genes):
            h = self.hist[g]
            extra = np.sort(big[big[:, 0] == g, 1]) if len(big) else np.zeros(0, dtype=np.int64)
            n = int(h.sum()) + len(extra)
            if not n:
                continue
            cum = np.cumsum(h)
            out[k] = (_kth(cum, extra, (n - 1) // 2) + _kth(cum, extra, n // 2)) / 2.0
        return out


def _kth(cum: np.ndarray, extra: np.ndarray, i: int) -> float:
    """The ``i``-th smallest (0-based) value of a histogram (cumulative counts of 1..cap) plus ``extra``."""
    if i < cum[-1]:
        return float(np.searchsorted(cum, i, side="right") + 1)
    return float(extra[i - cum[-1]])


def build_vocab_stream(sources: Mapping[str, CellSource | str | os.PathLike], *,
                       orthologs: Mapping[str, str] | None = None, max_genes_per_species: int | None = None,
                       min_cells: int = 3, layer: str | None = "counts", chunk_size: int = 20_000,
                       hist_cap: int = 256, progress: bool = False) -> GeneVocab:
    """:func:`~scprior.models.genecompass.tokens.build_vocab` from one streamed pass over ``sources``
    (species -> source; one chunk in memory at a time): the same genes, tokens and non-zero medians.

    Medians are exact for integer counts: a per-gene histogram of the values 1..``hist_cap`` (memory
    genes x ``hist_cap`` x 8 bytes) plus the larger values kept one by one. Non-integer values (not
    raw counts) are refused. Genes of a species are the union of its chunks' ``var_names``.
    """
    srcs = as_sources(sources, layer=layer)
    orth = {str(k).upper(): str(v) for k, v in (orthologs or {}).items()}
    per: dict[str, list[CellSource]] = {}
    for species, src in srcs.items():
        per.setdefault(get_species(species).name, []).append(src)
    species_l, symbols, human, medians = [], [], [], []
    for name in sorted(per):
        genes: dict[str, int] = {}  # upper symbol -> column in the pass's arrays (first spelling kept)
        spelled: list[str] = []
        detected = np.zeros(0, dtype=np.int64)
        values = _Values(0, hist_cap)
        cache: dict[int, np.ndarray] = {}
        for src in per[name]:
            chunks = src.chunks(chunk_size)
            if progress:
                from tqdm.auto import tqdm

                chunks = tqdm(chunks, total=src.n_chunks(chunk_size), desc=f"vocab {name}", leave=False)
            for chunk in chunks:
                names = [str(v) for v in chunk.adata.var_names]
                key = hash(tuple(names))
                if key not in cache:
                    for g in names:
                        if g.upper() not in genes:
                            genes[g.upper()] = len(spelled)
                            spelled.append(g)
                    cache[key] = np.asarray([genes[g.upper()] for g in names], dtype=np.int64)
                    if len(spelled) > len(detected):
                        grow = max(len(spelled), 2 * len(detected))
                        detected = np.concatenate([detected, np.zeros(grow - len(detected), np.int64)])
                        values.hist = np.concatenate([values.hist, np.zeros((grow - len(values.hist), values.cap),
                                                                             np.int64)])
                col = cache[key]
                x = chunk.counts
                if x.nnz and x.data.min() < 0:
                    raise ScpriorInputError(f"{name} counts must be non-negative; pass raw counts.")
                nz = x.data != 0
                if not np.all(np.mod(x.data[nz], 1) == 0):
                    raise ScpriorInputError(f"{name} counts are not integers: streamed medians need raw counts "
                                            "(layers['counts']); build the vocabulary with build_vocab instead.")
                g = col[x.indices[nz]]
                detected += np.bincount(g, minlength=len(detected))
                values.add(g, x.data[nz])
                del chunk, x
        n = len(spelled)
        order_names = sorted(range(n), key=lambda j: spelled[j].upper())  # build_vocab's gene order
        det = detected[order_names]
        order = selected_genes(det, min_cells=min_cells, max_genes=max_genes_per_species)
        cols = np.asarray(order_names, dtype=np.int64)[order]
        for j, m in zip(cols, values.medians(cols)):
            g = spelled[j]
            species_l.append(name)
            symbols.append(g)
            human.append(g.upper() if name == "human" else orth.get(g.upper(), ""))
            medians.append(m)
    if not symbols:
        raise ScpriorInputError("The pretraining corpus has no gene detected in enough cells; check the counts.")
    return GeneVocab(species_l, symbols, human, np.asarray(medians))


def pretrain_genecompass_stream(gc: GeneCompass, sources: Mapping[str, CellSource | str | os.PathLike],
                                config: PretrainConfig | None = None, *, layer: str | None = "counts",
                                chunk_size: int = 20_000, checkpoint: str | os.PathLike | None = None) -> TrainResult:
    """Masked-gene pretraining of ``gc`` (in place) on streamed cells through the one training loop.

    ``sources``: species (human/mouse) -> :class:`CellSource` or a path (``.h5ad`` read backed, a
    folder of shards; ``layer`` = the counts). A seeded ``config.val_fraction`` of the cells (by
    hash) is held out with a fixed mask; the best epoch is chosen on their loss and restored.
    Memory: one chunk of ``chunk_size`` cells and its encoding, plus the model.
    """
    cfg = config or PretrainConfig()
    srcs = as_sources(sources, layer=layer)
    kw = dict(chunk_size=chunk_size, val_fraction=cfg.val_fraction, seed=cfg.seed)
    train = StreamBatches(srcs, genecompass_chunk_builder(gc), batch_size=cfg.batch_size, part="train",
                          shuffle=True, **kw)
    val = StreamBatches(srcs, genecompass_chunk_builder(gc, mask_fraction=cfg.mask_fraction, seed=cfg.seed + 1,
                                                        sources=srcs),
                        batch_size=max(cfg.batch_size, 64), part="val", shuffle=False, **kw)
    n_train, n_val = train.n_cells(), val.n_cells()
    tcfg = TrainConfig(max_epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer="adamw",
                       patience=cfg.patience, seed=cfg.seed, device=cfg.device, progress=cfg.progress,
                       desc="genecompass stream pretrain", grad_clip=1.0)
    gc.model.to(pick_device(cfg.device))
    result = fit(gc.model, mlm_loss_fn(cfg.mask_fraction, cfg.id_weight, cfg.value_weight), train,
                 val if n_val else None, tcfg)
    gc.info.update({"pretrain": asdict(cfg), "pretrain_cells": n_train, "pretrain_val_cells": n_val,
                    "pretrain_stream": {"chunk_size": int(chunk_size), "sources": list(srcs)},
                    "pretrain_best_epoch": result.best_epoch, "pretrain_epochs_run": result.epochs_run,
                    "pretrain_history": result.history, "pretrain_seconds": result.seconds,
                    "prior_alpha": gc.model.embeddings.alpha})
    if checkpoint is not None:
        from scprior.runtime import is_rank0

        if is_rank0():
            gc.save(checkpoint)
    return result


__all__ = ["EncodedRows", "build_vocab_stream", "column_lookup", "genecompass_chunk_builder", "pretrain_genecompass_stream"]
