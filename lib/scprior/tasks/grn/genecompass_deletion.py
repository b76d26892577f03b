"""In-silico deletion with a GeneCompass model (:mod:`scprior.models.genecompass`), held-out TFs honoured.

:func:`pretrain_for_grn` pretrains a small GeneCompass on a dataset's own cells (self-supervised
masked-gene loss, no labels, no truth) whose GRN prior is the Pathway Commons regulon **without
any edge touching a held-out TF** (:func:`scprior.tasks.grn.holdout.prior_without`, checked by
:func:`~scprior.tasks.grn.holdout.check_no_leak`). :func:`deletion_scores` then deletes each
held-out TF and returns the TFs x genes mean cosine shift (overall and per cell type).

The model's vocabulary is the dataset's scored genes (candidate targets and TFs), so every cell's
rank encoding holds only those genes: on two CPU cores this keeps sequences short; GeneCompass
itself ranks all genes of a cell.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import pandas as pd
import torch

from scprior.errors import ScpriorInputError
from scprior.tasks.grn.deletion import (
    ALL,
    DeletionSettings,
    deletion_matrix,
    model_fingerprint,
    run_deletion,
)
from scprior.tasks.grn.holdout import check_no_leak, prior_without


@dataclass
class GrnModelSettings:
    """Model size and pretraining budget (``genecompass`` in notebooks.03_grn_inference)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    top_k: int = 256
    priors: tuple[str, ...] = ("text", "protein", "go", "grn", "family")
    prior_dim: int = 32
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 2


class GeneCompassEncoder:
    """Adapter: a :class:`~scprior.models.genecompass.GeneCompass` as a ``ContextualGeneEncoder``."""

    def __init__(self, gc) -> None:
        self.gc = gc

    def eval(self) -> None:
        self.gc.model.eval()

    def gene_embeddings(self, input_ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor,
                        padding_mask: torch.Tensor) -> torch.Tensor:
        dev = self.gc.device
        # the model derives its padding mask from PAD ids, which is what padding_mask says too
        return self.gc.model.gene_embeddings(input_ids.to(dev), values.to(dev), species.to(dev))


def pretrain_for_grn(adata: ad.AnnData, genes: Sequence[str], heldout: Sequence[str], regulon: pd.DataFrame,
                     knowledge_dir: str | os.PathLike, settings: GrnModelSettings, *, seed: int = 0,
                     checkpoint: str | os.PathLike | None = None, progress: bool = True):
    """Pretrain a GeneCompass on ``adata`` (human counts) restricted to ``genes``; the GRN prior
    holds no edge of the ``heldout`` TFs. Returns ``(model, train result, prior regulon used)``."""
    from scprior.models.genecompass import (
        GeneCompassConfig,
        PretrainConfig,
        build_model,
        build_priors,
        build_vocab,
        pretrain_genecompass,
    )
    from scprior.models.genecompass.priors import grn_prior
    from scprior.tasks.grn.evaluation import subset

    if "counts" not in adata.layers:
        raise ScpriorInputError("GeneCompass encodes counts: the AnnData needs layers['counts'].")
    cells = subset(adata, genes)
    vocab = build_vocab([("human", cells)], min_cells=1)
    keys = vocab.prior_keys()
    names = [p for p in settings.priors if p != "grn"]
    priors = build_priors(names, keys, knowledge_dir=knowledge_dir, dim=settings.prior_dim, seed=seed)
    prior_regulon = prior_without(regulon, heldout)
    check_no_leak(prior_regulon, heldout, genes)
    if "grn" in settings.priors:
        priors["grn"] = grn_prior(prior_regulon, keys, dim=settings.prior_dim, seed=seed)
    config = GeneCompassConfig(hidden_size=settings.hidden_size, num_layers=settings.num_layers,
                               num_heads=settings.num_heads, intermediate_size=settings.intermediate_size,
                               top_k=settings.top_k, priors=tuple(settings.priors))
    gc = build_model(vocab, priors, config, seed=seed)
    enc = gc.encode(cells, "human")
    result = pretrain_genecompass(gc, enc, PretrainConfig(epochs=settings.epochs, lr=settings.lr,
                                                          batch_size=settings.batch_size, patience=settings.patience,
                                                          seed=seed, progress=progress), checkpoint=checkpoint)
    gc.info["grn_heldout_tfs"] = sorted(heldout)
    gc.info["grn_prior_edges"] = int(len(prior_regulon))
    return gc, result, prior_regulon


def deletion_scores(gc, adata: ad.AnnData, genes: Sequence[str], tfs: Sequence[str], settings: DeletionSettings, *,
                    out_dir: str | os.PathLike | None = None, progress: bool = True
                    ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Delete each TF of ``tfs``: ``({"all" or cell type: TFs x genes shift}, long result table)``."""
    from scprior.tasks.grn.evaluation import subset

    cells = subset(adata, genes)
    enc = gc.encode(cells, "human")
    gene_to_id = {g: gc.vocab.token("human", g) for g in genes}
    gene_to_id = {g: t for g, t in gene_to_id.items() if t >= 0}
    usable = [t for t in tfs if t in gene_to_id]
    result = run_deletion(GeneCompassEncoder(gc), enc.input_ids, enc.values, enc.species,
                          cells.obs["cell_type"].astype(str).to_numpy(), usable, gene_to_id,
                          settings=settings, out_dir=out_dir, fingerprint=model_fingerprint(gc.model),
                          progress=progress)
    groups = [ALL, *sorted(set(result["group"]) - {ALL})] if len(result) else [ALL]
    return {g: deletion_matrix(result, list(tfs), list(genes), g) for g in groups}, result
