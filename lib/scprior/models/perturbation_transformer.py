"""scGenePT / the scGPT setting as a GEARS-like perturbation model: fit on a split, call on perturbations.

:class:`PerturbationTransformer` trains :class:`scprior.models.scgenept.ScGenePT` through
:func:`scprior.models.training.fit` with GEARS's cell pairing (every perturbed cell paired with a
random control cell; best epoch on the validation conditions' loss) and predicts a perturbation
as the mean over predictions from control cells. Like GEARS's ``GEARS.predict`` it is called on a
list of perturbations (``model([["KLF1"], ["KLF1", "GATA1"]])`` or condition names) and returns
mean profiles over ``var['gene_name']``; :meth:`PerturbationTransformer.save` / ``load`` write and
read a weights-only torch file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scprior.data.gears import pair_controls
from scprior.data.perturbation_data import PerturbationData, symbol_key
from scprior.data.perturbation_splits import PerturbationSplit
from scprior.data.perturbations import (
    CONTROL,
    canonical_condition,
    parse_condition,
    perturbed_genes,
)
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.scgenept import ScGenePT, ScGenePTConfig, language_table, sample_gene_subset
from scprior.models.scgpt_checkpoint import build_from_scgpt
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import pick_device
from scprior.safe_io import load_torch_tensors, save_torch_atomic


@dataclass
class DeepConfig:
    """Size and training budget of the deep models (CPU-sized defaults)."""

    d_model: int = 32
    nhead: int = 2
    d_hid: int = 64
    nlayers: int = 2
    dropout: float = 0.0
    residual: bool = True
    lr: float = 2e-3
    batch_size: int = 32
    max_epochs: int = 20
    patience: int = 4
    pairs_per_epoch: int = 640
    val_pairs: int = 128
    genes_per_sample: int = 128
    n_ctrl_predict: int = 16
    device: str = "auto"
    progress: bool = True
    scgpt_checkpoint: str | None = None  # a scGPT model folder: sizes from args.json, weights loaded


def token_symbols(task: PerturbationData) -> list[str]:
    """Token vocabulary: the measured genes, then perturbed genes that are not measured (sorted;
    matched case-insensitively)."""
    extra = sorted({symbol_key(g): g for g in perturbed_genes(task.conditions) if g not in task.gene_index}.values())
    return list(task.genes) + extra


def _pert_tokens(conditions: Sequence[str], token_pos: Mapping[str, int]) -> np.ndarray:
    """(n, 2) token ids of each condition's perturbed genes (-1 padding); keys of ``token_pos``
    are :func:`symbol_key`s."""
    out = np.full((len(conditions), 2), -1, dtype=np.int64)
    for i, c in enumerate(conditions):
        for j, g in enumerate(parse_condition(c)):
            key = symbol_key(g)
            if key not in token_pos:
                raise ScpriorInputError(f"Gene {g!r} is not in the model's vocabulary (measured genes and the "
                                        "perturbed genes of its training data).")
            out[i, j] = token_pos[key]
    return out


def _as_conditions(perturbations: Sequence[str] | Sequence[Sequence[str]]) -> list[str]:
    """GEARS-style gene lists (``[["A"], ["A", "B"]]``) or condition names -> canonical names."""
    out = []
    for p in perturbations:
        if isinstance(p, str):
            out.append(canonical_condition(p))
        else:
            genes = list(p)
            if not 1 <= len(genes) <= 2:
                raise ScpriorInputError(f"A perturbation is one or two genes, got {genes!r}.")
            out.append(canonical_condition("+".join(genes if len(genes) == 2 else [genes[0], CONTROL])))
    return out


class PerturbationTransformer:
    """scGenePT (``language`` given) or the scGPT setting (``language=None``) on one task.

    ``language``: GeneEmbeddings looked up for every token (missing genes: small random vectors).
    """

    def __init__(self, task: PerturbationData, *, language: GeneEmbeddings | None, config: DeepConfig | None = None,
                 seed: int = 0, name: str = "scgenept"):
        self.task, self.config, self.seed, self.name = task, config or DeepConfig(), seed, name
        self.symbols = token_symbols(task)
        self.token_pos = {symbol_key(g): i for i, g in enumerate(self.symbols)}
        table, self.language_report = (None, None)
        if language is not None:
            table, self.language_report = language_table(self.symbols, language, seed=seed)
        cfg = self.config
        torch.manual_seed(seed)
        self.checkpoint_report = None
        if cfg.scgpt_checkpoint:
            self.model, self.checkpoint_report = build_from_scgpt(
                cfg.scgpt_checkpoint, self.symbols, n_measured=len(task.genes), language_table=table,
                residual=cfg.residual)
            self.model_config = self.model.config
        else:
            self.model_config = ScGenePTConfig(n_tokens=len(self.symbols) + 1, n_measured=len(task.genes),
                                               d_model=cfg.d_model, nhead=cfg.nhead, d_hid=cfg.d_hid,
                                               nlayers=cfg.nlayers, dropout=cfg.dropout, residual=cfg.residual)
            self.model = ScGenePT(self.model_config, table)
        self.device = pick_device(cfg.device)
        self.result: TrainResult | None = None

    # -------------------------------------------------------------- pairs and batches
    def _pairs(self, labels: Sequence[str], rng: np.random.Generator, limit: int | None = None) -> torch.Tensor:
        """(n, 4) int64: target cell, paired control cell, two perturbation tokens (GEARS pairing)."""
        cells = np.flatnonzero(np.isin(self.task.labels, list(labels)))
        if limit is not None and len(cells) > limit:
            cells = np.sort(rng.choice(cells, limit, replace=False))
        partner = pair_controls(self.task.labels, rng=rng, cells=cells)
        tokens = _pert_tokens(self.task.canonical[cells], self.token_pos)
        return torch.as_tensor(np.column_stack([cells, partner, tokens]), dtype=torch.long)

    def _chunks(self, seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        n = len(self.task.genes)
        return list(torch.randperm(n, generator=gen).split(self.config.genes_per_sample))

    def _predict_cells(self, x: torch.Tensor, pert: torch.Tensor, chunks: list[torch.Tensor]) -> torch.Tensor:
        """(B, n_measured) predictions, gene chunks as in training (each with the batch's perturbed genes)."""
        n = self.model_config.n_measured
        out = torch.empty(x.shape[0], n, device=x.device)
        must = torch.unique(pert[(pert >= 0) & (pert < n)])
        for chunk in chunks:
            chunk = chunk.to(x.device)
            subset = torch.unique(torch.cat([chunk, must]))
            pred = self.model.forward_cells(x, pert, subset)
            out[:, chunk] = pred[:, torch.searchsorted(subset, chunk)]
        return out

    def _loss_fn(self, X: torch.Tensor, chunks: list[torch.Tensor]) -> Callable:
        size, n = self.config.genes_per_sample, self.model_config.n_measured

        def loss_fn(model, batch, epoch):
            (pairs,) = batch
            y, x, pert = X[pairs[:, 0]], X[pairs[:, 1]], pairs[:, 2:]
            if model.training:
                subset = sample_gene_subset(pert, n, size)
                pred = model.forward_cells(x, pert, subset)
                return {"loss": torch.mean((pred - y[:, subset]) ** 2)}
            pred = self._predict_cells(x, pert, chunks)
            return {"loss": torch.mean((pred - y) ** 2)}

        return loss_fn

    # -------------------------------------------------------------- fit / predict
    def fit(self, split: PerturbationSplit, *, checkpoint: str | Path | None = None) -> TrainResult:
        """Train on the split's train conditions; choose the best epoch on its val conditions."""
        cfg = self.config
        rng = np.random.default_rng(self.seed)
        train = self._pairs(split.conditions("train"), rng)
        val_labels = split.conditions("val")
        if not val_labels:
            raise ScpriorInputError("The split has no validation conditions; the best epoch must be chosen on them.")
        val = self._pairs(val_labels, rng, limit=cfg.val_pairs)
        X = torch.as_tensor(self.task.X, device=self.device)
        chunks = self._chunks(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        sampler = torch.utils.data.RandomSampler(train, replacement=False,
                                                 num_samples=min(cfg.pairs_per_epoch, len(train)), generator=gen)
        train_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train), batch_size=cfg.batch_size,
                                                   sampler=sampler, drop_last=len(train) > cfg.batch_size)
        val_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(val), batch_size=cfg.batch_size * 2)
        tc = TrainConfig(max_epochs=cfg.max_epochs, lr=cfg.lr, patience=cfg.patience, seed=self.seed,
                         device=self.device, progress=cfg.progress, grad_clip=1.0, desc=f"{self.name} seed {self.seed}")
        self.result = fit(self.model, self._loss_fn(X, chunks), train_loader, val_loader, tc, checkpoint=checkpoint,
                          extra_state={"model_config": asdict(self.model_config), "token_symbols": self.symbols,
                                       "deep_config": asdict(cfg), "dataset": self.task.name})
        return self.result

    @torch.no_grad()
    def predict(self, conditions: Sequence[str] | Sequence[Sequence[str]]) -> pd.DataFrame:
        """Mean predicted profile (rows: canonical names, columns: symbols) of each perturbation
        (condition names or gene lists) over ``n_ctrl_predict`` random control cells."""
        cfg = self.config
        self.model.eval().to(self.device)
        conditions = _as_conditions(conditions)
        rng = np.random.default_rng(self.seed + 1)
        X = torch.as_tensor(self.task.X, device=self.device)
        chunks = self._chunks(self.seed)
        k = min(cfg.n_ctrl_predict, len(self.task.ctrl_cells))
        ctrl_idx = np.stack([rng.choice(self.task.ctrl_cells, k, replace=False) for _ in conditions])
        tokens = _pert_tokens(conditions, self.token_pos)
        flat_ctrl = torch.as_tensor(ctrl_idx.ravel(), device=self.device)
        flat_tok = torch.as_tensor(np.repeat(tokens, k, axis=0), device=self.device)
        preds = []
        step = cfg.batch_size * 2
        for s in range(0, len(flat_ctrl), step):
            preds.append(self._predict_cells(X[flat_ctrl[s:s + step]], flat_tok[s:s + step], chunks).cpu())
        mean = torch.cat(preds).reshape(len(conditions), k, -1).mean(1).numpy()
        return pd.DataFrame(mean, index=conditions, columns=self.task.genes)

    def __call__(self, perturbations: Sequence[str] | Sequence[Sequence[str]]) -> pd.DataFrame:
        """GEARS-style: ``model([["KLF1"], ["KLF1", "GATA1"]])`` -> mean profiles (see :meth:`predict`)."""
        return self.predict(perturbations)

    def save(self, path: str | Path) -> Path:
        """Weights, sizes and vocabulary as a weights-only torch file (atomic)."""
        return save_torch_atomic({"state_dict": self.model.state_dict(), "model_config": asdict(self.model_config),
                                  "token_symbols": list(self.symbols), "deep_config": asdict(self.config),
                                  "seed": self.seed, "name": self.name, "dataset": self.task.name}, path)

    @classmethod
    def load(cls, path: str | Path, task: PerturbationData) -> PerturbationTransformer:
        """Rebuild from :meth:`save` (or a training checkpoint) for ``task`` (its control cells are
        the inputs); fails if the vocabulary differs from the task's."""
        state = load_torch_tensors(path, what="perturbation model")
        if "state_dict" not in state and "model_state" in state:  # a training checkpoint
            state = {**state, "state_dict": state["model_state"]}
        missing = [k for k in ("state_dict", "model_config", "token_symbols") if k not in state]
        if missing:
            raise ScpriorInputError(f"{path} lacks {missing}; save it with PerturbationTransformer.save.")
        cfg = {k: v for k, v in dict(state.get("deep_config", {})).items() if k in DeepConfig.__dataclass_fields__}
        self = cls.__new__(cls)
        self.task, self.config, self.seed = task, DeepConfig(**cfg), int(state.get("seed", 0))
        self.name = str(state.get("name", "scgenept"))
        self.symbols = list(state["token_symbols"])
        if self.symbols != token_symbols(task):
            raise ScpriorInputError(f"{path} was trained on another vocabulary than this dataset's genes.")
        self.token_pos = {symbol_key(g): i for i, g in enumerate(self.symbols)}
        self.model_config = ScGenePTConfig(**dict(state["model_config"]))
        sd = state["state_dict"]
        table = sd["lang_encoder.table"].numpy() if "lang_encoder.table" in sd else None
        self.model = ScGenePT(self.model_config, table)
        self.model.load_state_dict(sd)
        self.language_report = self.checkpoint_report = self.result = None
        self.device = pick_device(self.config.device)
        return self
