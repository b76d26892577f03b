"""sciLaMA: a sample VAE over cells and a gene (feature) VAE over prior gene embeddings, coupled.

* Sample VAE: ``[x (+ covariates)] -> hidden -> latent z_s``; its decoder's last hidden layer
  ``h_s`` (B, H) feeds the coupling.
* Gene VAE: one encoder per embedding modality (e.g. text and protein), latents fused by
  ``average`` / ``moe`` (precision-weighted) / ``poe`` (product of experts); its decoder's last
  hidden layer gives ``H_f`` (genes, H), the *contextual gene embeddings* come from its latent mean.
* Reconstruction ``x_hat = h_s @ H_f^T + b`` and ``x_tilde = z_s @ Z_f^T + b``; loss
  ``SSE(x, x_hat) + gamma * SSE(x, x_tilde) + beta * (KL_s + KL_f)``, beta 0 for ``warmup_epochs``
  then ``+ beta_rate`` per epoch up to ``beta_max``. Validation uses ``beta_max`` throughout, so the
  monitored loss is one objective and early stopping on held-out cells is meaningful.
* Modes: ``direct`` (joint from the start), ``stepwise`` (beta-VAE, then the gene VAE with the sample
  VAE frozen, then joint), ``beta_vae`` (sample VAE alone: the no-prior ablation).

Every phase trains through :func:`scprior.models.training.fit`. :func:`train_scilama` takes an
AnnData with normalised, scaled ``X`` and puts the cell embedding in ``obsm['X_sciLaMA']``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from scprior.data.validate import check_finite, check_nonempty, check_obs_column, is_count_matrix
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.batching import predict_batches, rows_loader, validation_split
from scprior.models.layers import mlp, one_hot
from scprior.models.likelihoods import gaussian_kl
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import seed_everything

MODES = ("direct", "stepwise", "beta_vae")
FUSIONS = ("average", "moe", "poe")


@dataclass
class SciLaMAConfig:
    """Architecture and training settings (defaults: sciLaMA's)."""

    hidden_dims: tuple[int, ...] = (900, 400)
    latent_dim: int = 50
    dropout: float = 0.0
    fusion: str = "average"
    gamma: float = 0.05
    mode: str = "direct"
    epochs: int = 200  # per phase
    warmup_epochs: int = 25
    beta_rate: float = 0.05
    beta_max: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_decay: float = 0.99
    batch_size: int = 128
    patience: int = 25
    val_fraction: float = 0.1
    var_eps: float = 1e-4
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if self.mode not in MODES:
            raise ScpriorInputError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.fusion not in FUSIONS:
            raise ScpriorInputError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}.")
        if len(self.hidden_dims) < 1:
            raise ScpriorInputError("hidden_dims needs at least one layer size.")

    def beta(self, epoch: int) -> float:
        """KL weight at ``epoch`` (0-based) during training."""
        if epoch < self.warmup_epochs:
            return 0.0
        return float(min(self.beta_max, self.beta_rate * (epoch - self.warmup_epochs + 1)))


class GaussianEncoder(nn.Module):
    """``[x (+ c)] -> hidden -> (mu, sigma)`` with sigma = sqrt(exp(.) + eps)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent: int, *, dropout: float, var_eps: float) -> None:
        super().__init__()
        self.body = mlp([in_dim, *hidden], dropout=dropout, activation="leaky_relu")
        self.mu = nn.Linear(hidden[-1], latent)
        self.log_var = nn.Linear(hidden[-1], latent)
        self.var_eps = var_eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), torch.sqrt(torch.exp(self.log_var(h)) + self.var_eps)


class HiddenDecoder(nn.Module):
    """``z (+ c) -> reversed hidden sizes``; returns the last hidden layer (linear, as in sciLaMA)."""

    def __init__(self, latent: int, hidden: Sequence[int], *, dropout: float) -> None:
        super().__init__()
        rev = list(hidden)[::-1]
        self.body = (mlp([latent, *rev[:-1]], dropout=dropout, activation="leaky_relu")
                     if len(rev) > 1 else nn.Identity())
        self.last = nn.Linear(rev[-2] if len(rev) > 1 else latent, rev[-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.last(self.body(z))


def fuse(mus: Sequence[torch.Tensor], sigmas: Sequence[torch.Tensor], how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse per-modality Gaussians: ``average`` of means and sigmas, or precision-weighted
    (``moe`` and ``poe`` both weight means by precision; ``poe`` sums precisions, ``moe`` averages them)."""
    if how == "average":
        return sum(mus) / len(mus), sum(sigmas) / len(sigmas)
    prec = [1.0 / (s.pow(2) + 1e-8) for s in sigmas]
    total = sum(prec)
    mu = sum(m * p for m, p in zip(mus, prec)) / total
    if how == "poe":
        return mu, torch.sqrt(1.0 / total)
    if how == "moe":
        return mu, torch.sqrt(len(prec) / total)
    raise ScpriorInputError(f"Unknown fusion {how!r}; use one of {FUSIONS}.")


class SciLaMA(nn.Module):
    """Sample VAE + gene VAE. ``gene_inputs``: modality -> (n_genes, D_k) embeddings (buffers)."""

    def __init__(self, n_genes: int, n_covariates: int, gene_inputs: Mapping[str, np.ndarray],
                 config: SciLaMAConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.n_covariates = int(n_covariates)
        h, lat = c.hidden_dims, c.latent_dim
        self.sample_encoder = GaussianEncoder(n_genes + n_covariates, h, lat, dropout=c.dropout, var_eps=c.var_eps)
        self.sample_decoder = HiddenDecoder(lat + n_covariates, h, dropout=c.dropout)
        self.output = nn.Linear(h[0], n_genes)  # bias b shared by all three reconstructions
        self.modalities = list(gene_inputs)
        for k, v in gene_inputs.items():
            arr = torch.as_tensor(np.asarray(v, dtype=np.float32))
            if arr.shape[0] != n_genes:
                raise ScpriorInputError(f"Gene embeddings {k!r} have {arr.shape[0]} rows for {n_genes} genes.")
            self.register_buffer(f"gene_input_{k}", arr)
        self.gene_encoders = nn.ModuleDict({
            k: GaussianEncoder(int(np.asarray(v).shape[1]), h, lat, dropout=c.dropout, var_eps=c.var_eps)
            for k, v in gene_inputs.items()})
        self.gene_decoder = HiddenDecoder(lat, h, dropout=c.dropout) if gene_inputs else None

    def _cov(self, x: torch.Tensor, cov: torch.Tensor | None) -> torch.Tensor:
        if self.n_covariates == 0:
            return x
        return torch.cat([x, one_hot(cov, self.n_covariates)], dim=1)

    def encode_cells(self, x: torch.Tensor, cov: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample_encoder(self._cov(x, cov))

    def encode_genes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused (mu, sigma) of every gene (n_genes, latent)."""
        if not self.modalities:
            raise ScpriorInputError("This sciLaMA has no gene embeddings (beta_vae mode).")
        outs = [self.gene_encoders[k](getattr(self, f"gene_input_{k}")) for k in self.modalities]
        return fuse([o[0] for o in outs], [o[1] for o in outs], self.config.fusion)

    def _sample(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return mu + sigma * torch.randn_like(mu) if self.training else mu

    def losses(self, x: torch.Tensor, cov: torch.Tensor | None, *, joint: bool) -> dict[str, torch.Tensor]:
        """Per-batch SSE terms and KLs (means over cells / genes)."""
        mu_s, sig_s = self.encode_cells(x, cov)
        z_s = self._sample(mu_s, sig_s)
        h_s = self.sample_decoder(self._cov(z_s, cov))
        kl_s = gaussian_kl(mu_s, sig_s).mean()
        if not joint:
            sse = (self.output(h_s) - x).pow(2).sum(1).mean()
            return {"sse": sse, "kl": kl_s}
        mu_f, sig_f = self.encode_genes()
        z_f = self._sample(mu_f, sig_f)
        h_f = self.gene_decoder(z_f)
        b = self.output.bias
        x_hat = h_s @ h_f.t() + b
        x_lat = z_s @ z_f.t() + b
        sse = (x_hat - x).pow(2).sum(1).mean() + self.config.gamma * (x_lat - x).pow(2).sum(1).mean()
        return {"sse": sse, "kl": kl_s + gaussian_kl(mu_f, sig_f).mean()}


def _loss(joint: bool):
    def loss_fn(model: SciLaMA, batch, epoch: int) -> dict[str, torch.Tensor]:
        x, cov = batch[0], (batch[1] if len(batch) > 1 else None)
        parts = model.losses(x, cov, joint=joint)
        beta = model.config.beta(epoch) if model.training else model.config.beta_max
        return {"loss": parts["sse"] + beta * parts["kl"], **parts, "beta": torch.tensor(beta)}
    return loss_fn


#: loss of the sample VAE alone, and of the coupled model
beta_vae_loss = _loss(joint=False)
joint_loss = _loss(joint=True)


def _set_trainable(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad = flag


def sample_vae_parts(model: SciLaMA) -> list[nn.Module]:
    """The modules of the sample VAE (frozen in the second stepwise phase)."""
    return [model.sample_encoder, model.sample_decoder, model.output]


@dataclass
class SciLaMAResult:
    """What :func:`train_scilama` returns: AnnData copy with ``obsm[key]``, gene embeddings, histories."""

    adata: ad.AnnData
    gene_embeddings: pd.DataFrame | None
    model: SciLaMA
    phases: dict[str, TrainResult]
    genes: list[str]


def match_gene_inputs(genes: Sequence[str], embeddings: Mapping[str, GeneEmbeddings]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Genes with an embedding in every modality (order kept) and the row-aligned matrices."""
    keep = list(genes)
    for e in embeddings.values():
        rep = e.match(keep)
        keep = [g for g in keep if g in rep.matched]
    if embeddings and not keep:
        raise ScpriorInputError(
            f"No gene has an embedding in every modality {list(embeddings)}; check the gene symbols "
            "(species?) and the embeddings.")
    return keep, {k: e.lookup(keep, missing="raise")[0] for k, e in embeddings.items()}


def check_not_counts(x, *, name: str = "adata.X") -> None:
    """Fail if ``x`` holds raw integer counts: sciLaMA reconstructs normalised, scaled values (SSE)."""
    vals = x.data if sp.issparse(x) else np.asarray(x)
    if vals.size and float(np.max(vals)) > 1 and is_count_matrix(x):
        raise ScpriorInputError(
            f"{name} holds raw integer counts, but sciLaMA models normalised, scaled expression (its loss "
            "is a squared error). Normalise and scale first: sc.pp.normalize_total, sc.pp.log1p, "
            "sc.pp.scale (keep the counts in layers['counts'])."
        )


def train_scilama(
    adata: ad.AnnData,
    embeddings: Mapping[str, GeneEmbeddings] | None,
    *,
    config: SciLaMAConfig | None = None,
    covariate_key: str | None = None,
    key: str = "X_sciLaMA",
    checkpoint_dir: str | os.PathLike | None = None,
    name: str = "scilama",
) -> SciLaMAResult:
    """Train sciLaMA on ``adata.X`` (normalised and scaled; cells x genes) and embed the cells.

    ``embeddings``: modality -> :class:`GeneEmbeddings` for ``adata.var_names`` (genes lacking one
    are dropped; ``mode="beta_vae"`` needs none). ``covariate_key``: an ``obs`` column given to
    encoder and decoder as one-hot (e.g. species). Best epoch of every phase on the loss of
    held-out cells. Returns a new AnnData (obs copied) with the cell embedding (latent means) in
    ``obsm[key]`` and, unless ``beta_vae``, the contextual gene embeddings (gene latent means) as a
    DataFrame indexed by gene. ``adata`` is not modified.
    """
    cfg = config or SciLaMAConfig()
    check_nonempty(adata)
    check_finite(adata.X, name="adata.X")
    check_not_counts(adata.X, name="adata.X")
    seed_everything(cfg.seed)
    embeddings = dict(embeddings or {}) if cfg.mode != "beta_vae" else {}
    if cfg.mode != "beta_vae" and not embeddings:
        raise ScpriorInputError(f"sciLaMA mode {cfg.mode!r} needs gene embeddings; use mode='beta_vae' without them.")
    genes, inputs = match_gene_inputs(list(adata.var_names), embeddings) if embeddings else (list(adata.var_names), {})
    x = adata[:, genes].X
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = x.astype(np.float32)
    arrays, n_cov = [], 0
    if covariate_key is not None:
        check_obs_column(adata, covariate_key)
        codes, cats = pd.factorize(adata.obs[covariate_key].astype(str))
        arrays, n_cov = [torch.as_tensor(codes)], len(cats)
    model = SciLaMA(len(genes), n_cov, inputs, cfg)
    tr, va = validation_split(adata.n_obs, fraction=cfg.val_fraction, seed=cfg.seed,
                              strata=adata.obs[covariate_key].astype(str).to_numpy() if covariate_key else None)
    train = rows_loader(x[tr], *[a[tr] for a in arrays], batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    val = rows_loader(x[va], *[a[va] for a in arrays], batch_size=cfg.batch_size) if len(va) else None
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    extra = {"config": asdict(cfg), "genes": genes, "n_covariates": n_cov, "modalities": list(inputs)}

    def phase(tag: str, loss_fn, *, min_epochs: int) -> TrainResult:
        tcfg = TrainConfig(max_epochs=cfg.epochs, lr=cfg.lr, optimizer="adamw", weight_decay=cfg.weight_decay,
                           lr_decay=cfg.lr_decay, patience=cfg.patience, min_epochs=min_epochs, seed=cfg.seed,
                           device=cfg.device, progress=cfg.progress, desc=f"{name} {tag}")
        return fit(model, loss_fn, train, val, tcfg,
                   checkpoint=ckpt / f"{name}_{tag}.pt" if ckpt else None, extra_state=extra)

    warm = cfg.warmup_epochs + int(np.ceil(cfg.beta_max / cfg.beta_rate)) if cfg.beta_rate > 0 else cfg.warmup_epochs
    phases: dict[str, TrainResult] = {}
    if cfg.mode == "beta_vae":
        phases["beta_vae"] = phase("beta_vae", beta_vae_loss, min_epochs=warm)
    elif cfg.mode == "direct":
        phases["joint"] = phase("joint", joint_loss, min_epochs=warm)
    else:
        phases["beta_vae"] = phase("beta_vae", beta_vae_loss, min_epochs=warm)
        for m in sample_vae_parts(model):
            _set_trainable(m, False)
        phases["gene_vae"] = phase("gene_vae", joint_loss, min_epochs=warm)
        for m in sample_vae_parts(model):
            _set_trainable(m, True)
        phases["joint"] = phase("joint", joint_loss, min_epochs=warm)
    device = next(model.parameters()).device
    model.eval()
    z = predict_batches(lambda xb, *c: model.encode_cells(xb, c[0] if c else None)[0], x, *arrays,
                        device=device, batch_size=1024)
    out = ad.AnnData(obs=adata.obs.copy())
    out.obsm[key] = z.astype(np.float32)
    gene_df = None
    if model.modalities:
        with torch.no_grad():
            mu_f, _ = model.encode_genes()
        gene_df = pd.DataFrame(mu_f.cpu().numpy(), index=pd.Index(genes, name="gene"))
    return SciLaMAResult(adata=out, gene_embeddings=gene_df, model=model, phases=phases, genes=genes)
