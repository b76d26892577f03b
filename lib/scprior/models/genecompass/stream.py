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
sample of it (:func:`~scprior.models.genecompass.tokens.build_vocab`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np
import torch

from scprior.data.species import get_species
from scprior.data.stream import CellSource, Chunk
from scprior.models.genecompass.api import GeneCompass, PretrainConfig
from scprior.models.genecompass.encoding import random_mask_np, rank_encode
from scprior.models.genecompass.model import mlm_loss_fn
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


__all__ = ["EncodedRows", "column_lookup", "genecompass_chunk_builder", "pretrain_genecompass_stream"]
