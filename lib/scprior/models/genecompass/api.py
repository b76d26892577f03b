"""The GeneCompass API other code uses: pretrain, encode cells, embed cells and genes, delete genes.

>>> gc, result = pretrain_genecompass(corpus, knowledge_dir=..., config=..., pretrain=...)
>>> enc = gc.encode(adata, "human")                 # RankEncoding (top-k ids + values + species)
>>> z = gc.embed(enc)                               # (n_cells, hidden) cell embeddings
>>> g = gc.gene_embeddings(enc)                     # (n_cells, top_k, hidden) last-layer gene embeddings
>>> enc_del = gc.delete_genes(enc, "human", ["GATA1"])   # in-silico deletion of a gene's token
>>> gc.save("model.pt"); gc = GeneCompass.load("model.pt")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from scprior.errors import ScpriorInputError
from scprior.models.genecompass.encoding import (
    N_SPECIAL,
    RankEncoding,
    random_mask_np,
    remove_tokens,
)
from scprior.models.genecompass.model import GeneCompassConfig, GeneCompassModel, mlm_loss_fn
from scprior.models.genecompass.tokens import GeneVocab
from scprior.models.training import TrainConfig, TrainResult, fit, tensor_loader
from scprior.runtime import pick_device, seed_everything

FORMAT = "scprior-genecompass-1"


@dataclass
class PretrainConfig:
    """Masked-gene pretraining through :func:`scprior.models.training.fit`."""

    epochs: int = 10
    lr: float = 5e-4
    weight_decay: float = 0.01
    batch_size: int = 32
    val_fraction: float = 0.1     # held-out corpus cells: the best epoch is chosen on their loss
    patience: int = 3
    mask_fraction: float = 0.15
    id_weight: float = 0.2
    value_weight: float = 0.8
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class GeneCompass:
    """A GeneCompass model with its vocabulary (tokens, medians, homologs) and provenance."""

    model: GeneCompassModel
    vocab: GeneVocab
    info: dict = field(default_factory=dict)

    @property
    def config(self) -> GeneCompassConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------- encoding
    def encode(self, adata, species: str, *, layer: str = "counts") -> RankEncoding:
        """Rank-encode an AnnData's ``layers[layer]`` (counts; var_names = symbols of ``species``)."""
        if layer not in adata.layers:
            raise ScpriorInputError(f"AnnData lacks layers[{layer!r}]: GeneCompass encodes counts.")
        return self.vocab.encode(adata.layers[layer], list(adata.var_names.astype(str)), species,
                                 top_k=self.config.top_k)

    def delete_genes(self, encoding: RankEncoding, species: str, symbols: Sequence[str]) -> RankEncoding:
        """``encoding`` with the tokens of ``symbols`` (genes of ``species``) removed from every cell."""
        tokens = [self.vocab.token(species, s) for s in symbols]
        unknown = [s for s, t in zip(symbols, tokens) if t < 0]
        if unknown:
            raise ScpriorInputError(f"Gene(s) {unknown} are not in the {species} vocabulary of this model.")
        return remove_tokens(encoding, tokens)

    # ------------------------------------------------------------------------ inference
    @torch.no_grad()
    def _batches(self, encoding: RankEncoding, fn: Callable, batch_size: int, progress: bool) -> list[np.ndarray]:
        self.model.eval()
        dev = self.device
        starts = range(0, len(encoding), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="genecompass", leave=False)
        out = []
        for s in starts:
            sl = slice(s, s + batch_size)
            ids = torch.as_tensor(encoding.input_ids[sl], device=dev)
            vals = torch.as_tensor(encoding.values[sl], device=dev)
            spc = torch.as_tensor(encoding.species[sl], device=dev)
            out.append(fn(ids, vals, spc).float().cpu().numpy())
        return out

    def embed(self, encoding: RankEncoding, *, batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """Cell embeddings (n_cells, hidden); each cell's embedding depends on that cell only."""
        return np.concatenate(self._batches(encoding, self.model.cell_embedding, batch_size, progress))

    def gene_embeddings(self, encoding: RankEncoding, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Contextual last-layer gene embeddings (n_cells, top_k, hidden), aligned with
        ``encoding.input_ids`` (zero rows at padding)."""
        return np.concatenate(self._batches(encoding, self.model.gene_embeddings, batch_size, progress))

    # ---------------------------------------------------------------------------- files
    def state(self) -> dict:
        """Plain-data checkpoint content (tensors, str, numbers, lists, dicts only)."""
        return {"format": FORMAT, "config": asdict(self.config), "vocab": self.vocab.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "info": _plain(self.info)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the model atomically (torch file of tensors and plain data: loads with weights_only)."""
        from scprior.models.genecompass.checkpoint import save_genecompass

        save_genecompass(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> GeneCompass:
        from scprior.models.genecompass.checkpoint import load_genecompass

        return load_genecompass(path, device=device)


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def build_model(vocab: GeneVocab, priors: dict[str, np.ndarray], config: GeneCompassConfig, *,
                seed: int = 0) -> GeneCompass:
    """A freshly initialised (seeded) model for ``vocab`` with the prior tables named in ``config.priors``."""
    seed_everything(seed)
    used = {k: priors[k] for k in config.priors}
    cfg = GeneCompassConfig(**{**asdict(config), "vocab_size": len(vocab),
                               "prior_dims": {k: int(v.shape[1]) for k, v in used.items()}})
    return GeneCompass(GeneCompassModel(cfg, used), vocab)


def corpus_split(encoding: RankEncoding, config: PretrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) corpus cell indices: a seeded ``val_fraction`` per species."""
    from scprior.models.batching import validation_split

    return validation_split(len(encoding), fraction=config.val_fraction, seed=config.seed, strata=encoding.species)


def pretrain_genecompass(gc: GeneCompass, encoding: RankEncoding, config: PretrainConfig | None = None, *,
                         checkpoint: str | os.PathLike | None = None) -> TrainResult:
    """Masked-gene pretraining of ``gc`` (in place) on the corpus ``encoding`` through the one loop.

    A seeded ``val_fraction`` of the corpus cells (stratified by species) is held out with a fixed
    mask; the best epoch is chosen on their masked-gene loss and restored.
    """
    cfg = config or PretrainConfig()
    tr, va = corpus_split(encoding, cfg)
    t, v = encoding.subset(tr), encoding.subset(va)
    train_loader = tensor_loader(t.input_ids, t.values, t.species, batch_size=cfg.batch_size, shuffle=True,
                                 seed=cfg.seed)
    val_loader = None
    if len(va):
        vmask = random_mask_np(v.input_ids, cfg.mask_fraction, seed=cfg.seed + 1)
        val_loader = tensor_loader(v.input_ids, v.values, v.species, vmask, batch_size=max(cfg.batch_size, 64))
    tcfg = TrainConfig(max_epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, optimizer="adamw",
                       patience=cfg.patience, seed=cfg.seed, device=cfg.device, progress=cfg.progress,
                       desc="genecompass pretrain", grad_clip=1.0)
    gc.model.to(pick_device(cfg.device))
    result = fit(gc.model, mlm_loss_fn(cfg.mask_fraction, cfg.id_weight, cfg.value_weight), train_loader,
                 val_loader, tcfg)
    gc.info.update({"pretrain": asdict(cfg), "pretrain_cells": int(len(tr)), "pretrain_val_cells": int(len(va)),
                    "pretrain_best_epoch": result.best_epoch, "pretrain_epochs_run": result.epochs_run,
                    "pretrain_history": result.history, "pretrain_seconds": result.seconds,
                    "prior_alpha": gc.model.embeddings.alpha})
    if checkpoint is not None:
        gc.save(checkpoint)
    return result


__all__ = ["FORMAT", "N_SPECIAL", "GeneCompass", "PretrainConfig", "build_model", "corpus_split",
           "pretrain_genecompass"]
