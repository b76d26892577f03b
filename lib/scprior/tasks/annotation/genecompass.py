"""GeneCompass recipe for annotation: corpus, priors, pretraining, fine-tuning (or frozen encoder).

The pretraining corpus is every real count matrix of the task data (Baron human, Baron mouse,
PBMC pseudo-counts), label-free. Gene medians, the vocabulary and the co-expression prior come
from the corpus cells of the pretraining *training* split only; the best pretraining epoch is
chosen on the held-out corpus cells' masked-gene loss.

Fine-tuning: a linear head on the cell embedding; the encoder is fine-tuned (``frozen=False``) or
kept fixed (``frozen=True``: the head is trained on precomputed embeddings). The best epoch is the
one with the highest macro-F1 on the validation cells (carved from the training cells): the
validation set is scored as one batch and ``1 - macro-F1`` is the monitored loss of the one
training loop. Test cells are never seen before the final prediction.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from scprior.models.genecompass import (
    GeneCompass,
    GeneCompassConfig,
    build_model,
    build_priors,
    build_vocab,
)
from scprior.models.genecompass.api import PretrainConfig, corpus_split, pretrain_genecompass
from scprior.models.genecompass.encoding import RankEncoding
from scprior.models.training import TrainConfig, TrainResult, fit, tensor_loader


@dataclass
class FinetuneConfig:
    """Classification fine-tuning (head on the cell embedding)."""

    epochs: int = 10
    lr: float = 1e-3
    head_lr: float | None = None   # frozen head lr (default: lr)
    batch_size: int = 32
    patience: int = 3
    dropout: float = 0.1
    weight_decay: float = 0.01
    device: str = "auto"
    progress: bool = False


def corpus(datasets: Mapping[str, ad.AnnData]) -> list[tuple[str, ad.AnnData]]:
    """(species, AnnData) of every real count matrix: Baron human, Baron mouse, PBMC (human)."""
    return [("human", datasets["human"]), ("mouse", datasets["mouse"]), ("human", datasets["pbmc"])]


@dataclass
class Pretrained:
    """The vocabulary-level pieces shared by every variant: vocab, all prior tables, corpus encoding."""

    vocab: object
    priors: dict[str, np.ndarray]
    encoding: RankEncoding
    train_idx: np.ndarray
    val_idx: np.ndarray


def prepare_corpus(datasets: Mapping[str, ad.AnnData], *, knowledge_dir, orthologs: Mapping[str, str],
                   prior_names: Sequence[str], model: GeneCompassConfig, pretrain: PretrainConfig,
                   max_genes_per_species: int | None, prior_dim: int, promoter_file=None) -> Pretrained:
    """Vocabulary + medians (corpus training split), prior tables, the corpus encoding and its split."""
    parts = corpus(datasets)
    # split first (by cell, per species) so medians, vocabulary and co-expression see training cells only
    n = [a.n_obs for _, a in parts]
    species = np.concatenate([np.full(k, 0 if s == "human" else 1) for (s, _), k in zip(parts, n)])
    dummy = RankEncoding(np.zeros((len(species), 1)), np.zeros((len(species), 1)), species)
    tr, va = corpus_split(dummy, pretrain)
    offsets = np.cumsum([0] + n)
    train_parts = []
    for (s, a), lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        keep = tr[(tr >= lo) & (tr < hi)] - lo
        train_parts.append((s, a[keep]))
    vocab = build_vocab(train_parts, orthologs=orthologs, max_genes_per_species=max_genes_per_species)
    enc = RankEncoding.concat([vocab.encode(a.layers["counts"], list(a.var_names), s, top_k=model.top_k)
                               for s, a in parts])
    coexp = []
    for s, a in train_parts:
        genes = [g.upper() if s == "human" else orthologs.get(g.upper(), "") for g in a.var_names.astype(str)]
        coexp.append((sp.csr_matrix(a.X), genes))
    priors = build_priors(prior_names, vocab.prior_keys(), knowledge_dir=knowledge_dir, training=coexp,
                          dim=prior_dim, seed=pretrain.seed, promoter_file=promoter_file)
    return Pretrained(vocab, priors, enc, tr, va)


def pretrained_model(pre: Pretrained, model: GeneCompassConfig, pretrain: PretrainConfig, *,
                     priors: Sequence[str], do_pretrain: bool = True, checkpoint=None) -> GeneCompass:
    """A model with ``priors`` switched on, pretrained on the corpus (or left at its seeded init)."""
    cfg = GeneCompassConfig(**{**model.__dict__, "priors": tuple(priors)})
    gc = build_model(pre.vocab, pre.priors, cfg, seed=pretrain.seed)
    if do_pretrain and pretrain.epochs > 0:
        pretrain_genecompass(gc, pre.encoding, pretrain, checkpoint=checkpoint)
    else:
        gc.info["pretrain"] = None
    gc.info["priors"] = list(priors)
    return gc


# -------------------------------------------------------------------------- fine-tuning
class CellClassifier(nn.Module):
    """GeneCompass encoder + dropout + linear head on the cell embedding: (ids, values, species) -> logits."""

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, n_classes))

    def forward(self, ids, values, species):
        return self.head(self.encoder.cell_embedding(ids, values, species))


def macro_f1_torch(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Macro-F1 over the classes present in ``y`` or ``pred`` (as sklearn's default)."""
    f1s = []
    for c in range(n_classes):
        tp = ((pred == c) & (y == c)).sum()
        fp = ((pred == c) & (y != c)).sum()
        fn = ((pred != c) & (y == c)).sum()
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return torch.stack(f1s).float().mean() if f1s else torch.tensor(0.0)


def _loss_fn(n_classes: int, forward):
    def loss_fn(model, batch, epoch):
        *inputs, y = batch
        logits = forward(model, *inputs)
        ce = F.cross_entropy(logits, y)
        if model.training:
            return {"loss": ce}
        f1 = macro_f1_torch(logits.argmax(1), y, n_classes)
        return {"loss": 1.0 - f1, "ce": ce, "macro_f1": f1}

    return loss_fn


@dataclass
class Finetuned:
    """A trained classifier (fine-tuned or frozen encoder) and its training result."""

    model: nn.Module
    frozen: bool
    result: TrainResult
    gc: GeneCompass

    @torch.no_grad()
    def predict(self, encoding: RankEncoding, batch_size: int = 128) -> np.ndarray:
        """Class indices (n_cells,) for ``encoding``."""
        self.model.eval()
        dev = next(self.model.parameters()).device
        if self.frozen:
            z = torch.as_tensor(self.gc.embed(encoding, batch_size=batch_size), device=dev)
            return self.model(z).argmax(1).cpu().numpy()
        out = []
        for s in range(0, len(encoding), batch_size):
            e = encoding.subset(np.arange(s, min(s + batch_size, len(encoding))))
            logits = self.model(*(torch.as_tensor(a, device=dev) for a in (e.input_ids, e.values, e.species)))
            out.append(logits.argmax(1).cpu().numpy())
        return np.concatenate(out)


def finetune(gc: GeneCompass, train: RankEncoding, y_train: np.ndarray, val: RankEncoding, y_val: np.ndarray, *,
             n_classes: int, frozen: bool, config: FinetuneConfig, seed: int) -> Finetuned:
    """Train a classifier on ``train``; the best epoch is chosen on ``val`` macro-F1 (one batch)."""
    cfg = config
    y_train = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    y_val = torch.as_tensor(np.asarray(y_val), dtype=torch.long)
    tcfg = TrainConfig(max_epochs=cfg.epochs, lr=(cfg.head_lr or cfg.lr) if frozen else cfg.lr,
                       weight_decay=cfg.weight_decay, optimizer="adamw", patience=cfg.patience, seed=seed,
                       device=cfg.device, progress=cfg.progress, desc="genecompass finetune", grad_clip=1.0)
    if frozen:
        gc.model.eval()
        ztr = torch.as_tensor(gc.embed(train))
        zva = torch.as_tensor(gc.embed(val))
        torch.manual_seed(seed)
        head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(ztr.shape[1], n_classes))
        res = fit(head, _loss_fn(n_classes, lambda m, z: m(z)),
                  tensor_loader(ztr, y_train, batch_size=cfg.batch_size, shuffle=True, seed=seed),
                  tensor_loader(zva, y_val, batch_size=max(len(zva), 1)), tcfg)
        return Finetuned(head, True, res, gc)
    torch.manual_seed(seed)
    clf = CellClassifier(copy.deepcopy(gc.model), n_classes, cfg.dropout)
    res = fit(clf, _loss_fn(n_classes, lambda m, i, v, s: m(i, v, s)),
              tensor_loader(train.input_ids, train.values, train.species, y_train, batch_size=cfg.batch_size,
                            shuffle=True, seed=seed),
              tensor_loader(val.input_ids, val.values, val.species, y_val, batch_size=max(len(val), 1)), tcfg)
    return Finetuned(clf, False, res, gc)
