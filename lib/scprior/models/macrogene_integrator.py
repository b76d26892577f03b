"""Macrogene integrator: SATURN's core with Unify's multimodal macrogenes, for any number of species.

A cell's counts (its species' genes, on one gene axis shared by all species) become macrogene
activities ``Dropout(ReLU(LayerNorm(log1p(x) @ W_k)))`` for each macrogene set ``k`` (e.g. protein
and text embeddings, side by side; either alone is an ablation), concatenated, then encoded.

Training has two phases, both through :func:`scprior.models.training.fit`:

1. **Pretraining**: ZINB autoencoder. The decoder sees ``z`` plus the one-hot of the cell's *own*
   species (SATURN hard-coded index 0), maps to macrogene scales, back to genes through ``W^T``,
   softmax over that species' genes times the library size = ZINB mean; per-gene dispersion and
   zero-inflation. Loss = ZINB NLL + ``l1_weight * sum W`` + ``similarity_weight *`` the
   embedding-similarity regulariser; optionally a species discriminator behind gradient reversal
   (Unify's adversarial term). Best epoch on the ZINB loss of held-out cells.
2. **Metric learning** (optional): the encoder is tuned with semi-hard cosine triplets on weak
   labels (species-prefixed cell types, or per-species k-means clusters in the label-free mode),
   with cross-species mutual nearest neighbours as extra positives. Fixed epochs, last epoch kept
   (no selection on labels).

The AnnData entry point is :func:`integrate`; it returns the combined AnnData with the embedding in
``obsm[key]`` and the gene-to-macrogene weights as a DataFrame.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from scprior.data.species import get_species
from scprior.data.validate import check_counts
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.batching import predict_batches, rows_loader, validation_split
from scprior.models.layers import GradientReversal, full_block, mlp, one_hot
from scprior.models.likelihoods import zinb_log_prob
from scprior.models.macrogenes import MacrogeneLayer, Macrogenes, build_macrogenes
from scprior.models.metric_learning import POSITIVES, semihard_triplet_loss, species_prefixed
from scprior.models.species_data import check_species_adatas, stacked_obs
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import seed_everything

LABEL_MODES = ("weak", "clusters", "none")


@dataclass
class MacrogeneIntegratorConfig:
    """Architecture and training settings (defaults follow SATURN, scaled by ``params.yaml``)."""

    n_macrogenes: int = 2000
    hidden_dim: int = 256
    latent_dim: int = 256
    dropout: float = 0.1
    learn_weights: bool = True
    l1_weight: float = 0.1
    similarity_weight: float = 0.2
    similarity_pairs: int | None = None  # genes per step in the regulariser; None = all
    adversarial_weight: float = 0.0  # > 0: species discriminator behind gradient reversal (Unify)
    pretrain_epochs: int = 200
    pretrain_lr: float = 5e-4
    metric_epochs: int = 50
    metric_lr: float = 1e-3
    margin: float = 0.2
    mnn: bool = True
    positives: str = "cross_species"  # SATURN's miner: a triplet's positive is of another species; "all": any
    label_mode: str = "weak"  # weak | clusters | none
    n_clusters: int = 20  # per species, label-free mode
    batch_size: int = 256
    val_fraction: float = 0.1
    patience: int = 20
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.label_mode not in LABEL_MODES:
            raise ScpriorInputError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}.")
        if self.positives not in POSITIVES:
            raise ScpriorInputError(f"positives must be one of {POSITIVES}, got {self.positives!r}.")


class MacrogeneIntegrator(nn.Module):
    """The network: macrogene layers -> encoder -> latent; species-conditioned ZINB decoder.

    ``gene_species`` (n_genes,) gives the species code of every gene on the shared axis;
    ``layers`` maps a set name (``"protein"``, ``"text"``) to its :class:`MacrogeneLayer`.
    """

    def __init__(self, layers: Mapping[str, MacrogeneLayer], gene_species: np.ndarray, n_species: int,
                 config: MacrogeneIntegratorConfig) -> None:
        super().__init__()
        if not layers:
            raise ScpriorInputError("The integrator needs at least one macrogene set (protein and/or text).")
        if n_species < 2:
            raise ScpriorInputError(f"Cross-species integration needs >= 2 species, got {n_species}.")
        self.config = config
        self.n_species = int(n_species)
        codes = np.asarray(gene_species, dtype=np.int64)
        if np.any(np.diff(codes) < 0) or set(np.unique(codes)) != set(range(self.n_species)):
            raise ScpriorInputError("Axis genes must be grouped by species (codes 0..n_species-1, in order).")
        self.register_buffer("gene_species", torch.as_tensor(codes))
        #: [lo, hi) of every species' block of genes on the axis
        self.blocks = [(int(np.searchsorted(codes, c)), int(np.searchsorted(codes, c, side="right")))
                       for c in range(self.n_species)]
        self.macrogenes = nn.ModuleDict(dict(layers))
        self.norms = nn.ModuleDict({k: nn.LayerNorm(v.n_macrogenes) for k, v in layers.items()})
        n_mg = sum(v.n_macrogenes for v in layers.values())
        self.n_macrogenes = n_mg
        n_genes = len(gene_species)
        c = config
        self.input_dropout = nn.Dropout(c.dropout)
        self.encoder = mlp([n_mg, c.hidden_dim, c.latent_dim], dropout=c.dropout)
        self.decoder = full_block(c.latent_dim + self.n_species, c.hidden_dim, dropout=c.dropout)
        self.scale_decoders = nn.ModuleDict({k: full_block(c.hidden_dim, v.n_macrogenes, dropout=0.0)
                                             for k, v in layers.items()})
        self.dropout_decoder = nn.Linear(c.hidden_dim, n_genes)
        self.log_theta = nn.Parameter(torch.zeros(n_genes))
        self.discriminator = None
        if c.adversarial_weight > 0:
            self.discriminator = nn.Sequential(GradientReversal(1.0),
                                               mlp([c.latent_dim, c.hidden_dim], dropout=c.dropout),
                                               nn.Linear(c.hidden_dim, self.n_species))

    # ------------------------------------------------------------------------------ forward
    def _groups(self, species: torch.Tensor):
        """(species code, cell indices, gene block lo, hi) for every species present in the batch."""
        for code, (lo, hi) in enumerate(self.blocks):
            idx = torch.nonzero(species == code).flatten()
            if len(idx):
                yield code, idx, lo, hi

    def macrogene_input(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Counts (B, n_genes) of cells of ``species`` (B,) -> macrogene activities (B, total macrogenes).

        Only each cell's own species block of genes is read (the rest of its row is zero anyway).
        """
        weights = {k: layer.weights() for k, layer in self.macrogenes.items()}
        out = x.new_zeros(len(x), self.n_macrogenes)
        for _, idx, lo, hi in self._groups(species):
            xl = torch.log1p(x[idx, lo:hi])
            parts = [self.input_dropout(F.relu(self.norms[k](xl @ w[lo:hi]))) for k, w in weights.items()]
            out = out.index_copy(0, idx, torch.cat(parts, dim=1))
        return out

    def encode(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Counts (B, n_genes) of cells of ``species`` (B,) -> latent (B, latent_dim)."""
        return self.encoder(self.macrogene_input(x, species))

    def _decoded(self, z: torch.Tensor, species: torch.Tensor):
        h = self.decoder(torch.cat([z, one_hot(species, self.n_species)], dim=1))
        scales = {k: dec(h) for k, dec in self.scale_decoders.items()}
        weights = {k: layer.weights() for k, layer in self.macrogenes.items()}
        for code, idx, lo, hi in self._groups(species):
            logits = sum(scales[k][idx] @ weights[k][lo:hi].t() for k in weights)
            zi = F.linear(h[idx], self.dropout_decoder.weight[lo:hi], self.dropout_decoder.bias[lo:hi])
            yield code, idx, lo, hi, torch.softmax(logits, dim=1), zi

    def species_nll(self, x: torch.Tensor, species: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ZINB negative log-likelihood (B,) of each cell's counts over its own species' genes, the
        decoder conditioned on that species; mean = softmax over those genes x the cell's library size."""
        nll = x.new_zeros(len(x))
        for _, idx, lo, hi, probs, zi in self._decoded(z, species):
            counts = x[idx, lo:hi]
            mu = counts.sum(1, keepdim=True) * probs
            ll = zinb_log_prob(counts, mu, torch.exp(self.log_theta[lo:hi]), zi).sum(1)
            nll = nll.index_copy(0, idx, -ll)
        return nll

    def decode(self, z: torch.Tensor, species: torch.Tensor, library: torch.Tensor):
        """ZINB (mu, theta, zi_logits) on the whole axis (mu 0 outside each cell's species block)."""
        mu = z.new_zeros(len(z), len(self.gene_species))
        zi = z.new_zeros(len(z), len(self.gene_species))
        for _, idx, lo, hi, probs, zlog in self._decoded(z, species):
            block = torch.zeros_like(mu[idx])
            block[:, lo:hi] = library[idx, None] * probs
            mu = mu.index_copy(0, idx, block)
            zblock = torch.zeros_like(zi[idx])
            zblock[:, lo:hi] = zlog
            zi = zi.index_copy(0, idx, zblock)
        return mu, torch.exp(self.log_theta), zi

    # ------------------------------------------------------------------------------- losses
    def regulariser(self) -> torch.Tensor:
        """``l1_weight * sum W + similarity_weight * embedding-similarity penalty`` over all sets."""
        c = self.config
        reg = torch.zeros((), device=self.log_theta.device)
        for layer in self.macrogenes.values():
            if c.l1_weight:
                reg = reg + c.l1_weight * layer.l1()
            if c.similarity_weight:
                reg = reg + c.similarity_weight * layer.similarity_penalty(c.similarity_pairs)
        return reg

    def weights_frame(self, axis: pd.DataFrame) -> pd.DataFrame:
        """Gene-to-macrogene weights (rows: ``axis`` (species, gene); columns ``<set>_mg<i>``)."""
        frames = []
        for k, layer in self.macrogenes.items():
            w = layer.weights().detach().cpu().numpy()
            frames.append(pd.DataFrame(w, columns=[f"{k}_mg{i}" for i in range(w.shape[1])]))
        out = pd.concat(frames, axis=1)
        out.index = pd.MultiIndex.from_frame(axis[["species", "gene"]])
        return out


def pretrain_loss(model: MacrogeneIntegrator, batch, epoch: int) -> dict[str, torch.Tensor]:
    """Training: ZINB NLL per cell over its species' genes + regulariser (+ adversarial term).

    In eval mode (validation) the loss is the ZINB NLL alone: the best epoch is the one that
    reconstructs held-out cells best.
    """
    x, species = batch[0], batch[1]
    z = model.encode(x, species)
    nll = model.species_nll(x, species, z).mean()
    if not model.training:
        return {"loss": nll, "nll": nll}
    reg = model.regulariser()
    out = {"nll": nll, "reg": reg}
    loss = nll + reg
    if model.discriminator is not None:
        adv = F.cross_entropy(model.discriminator(z), species)
        out["adversarial"] = adv
        loss = loss + model.config.adversarial_weight * adv
    out["loss"] = loss
    return out


def metric_loss(model: MacrogeneIntegrator, batch, epoch: int) -> dict[str, torch.Tensor]:
    """Semi-hard cosine triplet loss on weak labels with cross-species MNN positives."""
    x, species, labels = batch
    z = model.encode(x, species)
    c = model.config
    loss, n = semihard_triplet_loss(z, labels, species, margin=c.margin, mnn=c.mnn, positives=c.positives)
    return {"loss": loss, "triplets": torch.tensor(float(n))}


def freeze_for_metric_learning(model: MacrogeneIntegrator) -> None:
    """Only the encoder trains in metric learning (macrogene weights, decoder, discriminator fixed)."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("encoder.")


def cluster_labels(z: np.ndarray, species: np.ndarray, *, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Label-free weak labels: k-means clusters of ``z`` within each species, species-prefixed."""
    from sklearn.cluster import KMeans

    labels = np.empty(len(z), dtype=object)
    for s in np.unique(species):
        idx = np.flatnonzero(species == s)
        k = int(min(n_clusters, len(idx)))
        km = KMeans(n_clusters=k, random_state=int(seed), n_init=3).fit(z[idx])
        labels[idx] = [f"{s}:c{c}" for c in km.labels_]
    return labels


# ---------------------------------------------------------------------------- AnnData API
@dataclass
class IntegrationResult:
    """What :func:`integrate` returns: combined AnnData (embedding in ``obsm[key]``), weights, histories."""

    adata: ad.AnnData
    weights: pd.DataFrame
    model: MacrogeneIntegrator
    axis: pd.DataFrame
    pretrain: TrainResult
    metric: TrainResult | None = None
    reports: dict = field(default_factory=dict)


def gene_axis(adatas: Mapping[str, ad.AnnData], macrogene_sets: Mapping[str, Macrogenes]) -> pd.DataFrame:
    """The shared gene axis: per species (in ``adatas`` order), its genes covered by any set."""
    frames = []
    for species, adata in adatas.items():
        name = get_species(species).name
        covered = set()
        for mg in macrogene_sets.values():
            covered |= set(mg.genes.loc[mg.genes["species"] == name, "gene"])
        genes = [g for g in adata.var_names if g in covered]
        if not genes:
            raise ScpriorInputError(f"No gene of the {name} data has an embedding in any macrogene set.")
        frames.append(pd.DataFrame({"species": name, "gene": genes}))
    return pd.concat(frames, ignore_index=True)


def _axis_counts(adatas: Mapping[str, ad.AnnData], axis: pd.DataFrame, layer: str) -> sp.csr_matrix:
    blocks = []
    for species, adata in adatas.items():
        name = get_species(species).name
        genes = axis.loc[axis["species"] == name, "gene"].tolist()
        counts = adata[:, genes].layers[layer] if layer else adata[:, genes].X
        blocks.append(sp.csr_matrix(counts, dtype=np.float32))
    return sp.block_diag(blocks, format="csr", dtype=np.float32)


def build_sets(
    adatas: Mapping[str, ad.AnnData],
    embeddings: Mapping[str, Mapping[str, GeneEmbeddings]],
    *,
    n_macrogenes: int,
    seed: int = 0,
) -> dict[str, Macrogenes]:
    """One :class:`Macrogenes` per embedding set (e.g. ``{"protein": {...}, "text": {...}}``)."""
    genes = {get_species(s).name: list(a.var_names) for s, a in adatas.items()}
    out = {}
    for name, per_species in embeddings.items():
        per = {get_species(s).name: e for s, e in per_species.items()}
        out[name] = build_macrogenes(per, genes, n_macrogenes=n_macrogenes, seed=seed)
    return out


@dataclass
class Pretrained:
    """A pretrained integrator with everything the metric-learning phase needs (reusable for
    several label modes: :func:`metric_learn` fine-tunes a copy)."""

    model: MacrogeneIntegrator
    axis: pd.DataFrame
    counts: sp.csr_matrix
    cell_species: np.ndarray
    species: list[str]
    obs: pd.DataFrame
    labels: np.ndarray | None
    train_idx: np.ndarray
    val_idx: np.ndarray
    history: TrainResult
    embedding: np.ndarray
    extra: dict
    reports: dict = field(default_factory=dict)


def pretrain(
    adatas: Mapping[str, ad.AnnData],
    embeddings: Mapping[str, Mapping[str, GeneEmbeddings]],
    *,
    config: MacrogeneIntegratorConfig | None = None,
    label_key: str | None = "cell_type",
    layer: str = "counts",
    checkpoint_dir: str | os.PathLike | None = None,
    name: str = "unify",
) -> Pretrained:
    """Macrogenes + ZINB autoencoder pretraining (phase 1); see :func:`integrate` for the arguments.

    The weak labels in ``obs[label_key]`` are read (if present) for a later weak-label phase.
    """
    cfg = config or MacrogeneIntegratorConfig()
    needs_labels = cfg.label_mode == "weak"
    species_names = check_species_adatas(adatas, layer=layer, label_key=label_key if needs_labels else None,
                                         min_species=2)
    seed_everything(cfg.seed)
    sets = build_sets(adatas, embeddings, n_macrogenes=cfg.n_macrogenes, seed=cfg.seed)
    axis = gene_axis(adatas, sets)
    pos = {(s, g): i for i, (s, g) in enumerate(zip(axis["species"], axis["gene"]))}
    layers = {}
    for set_name, mg in sets.items():
        pairs = list(zip(mg.genes["species"], mg.genes["gene"]))
        keep = np.asarray([p in pos for p in pairs], dtype=bool)
        sub = Macrogenes(mg.source, mg.genes[keep].reset_index(drop=True), mg.weights[keep], mg.centroids,
                         mg.embeddings[keep], mg.reports)
        rows = np.asarray([pos[p] for p, k in zip(pairs, keep) if k], dtype=np.int64)
        layers[set_name] = MacrogeneLayer.from_macrogenes(sub, rows, len(axis), learnable=cfg.learn_weights)
    gene_species = np.asarray([species_names.index(s) for s in axis["species"]])
    model = MacrogeneIntegrator(layers, gene_species, len(species_names), cfg)

    counts = _axis_counts(adatas, axis, layer)
    cell_species = np.concatenate([np.full(a.n_obs, i) for i, a in enumerate(adatas.values())])
    train_idx, val_idx = validation_split(len(cell_species), fraction=cfg.val_fraction, seed=cfg.seed,
                                          strata=cell_species)
    sp_t = torch.as_tensor(cell_species)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    extra = {"axis": axis.to_dict(orient="list"), "species": species_names, "config": asdict(cfg),
             "sets": {k: [v.n_macrogenes, int(v.gene_embeddings.shape[1])] for k, v in layers.items()}}
    pre_cfg = TrainConfig(max_epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr, patience=cfg.patience,
                          seed=cfg.seed, device=cfg.device, progress=cfg.progress, desc=f"{name} pretrain")
    val_loader = (rows_loader(counts[val_idx], sp_t[val_idx], batch_size=cfg.batch_size)
                  if len(val_idx) else None)
    history = fit(model, pretrain_loss,
                  rows_loader(counts[train_idx], sp_t[train_idx], batch_size=cfg.batch_size, shuffle=True,
                              seed=cfg.seed),
                  val_loader, pre_cfg,
                  checkpoint=ckpt / f"{name}_pretrain.pt" if ckpt else None, extra_state=extra)
    device = next(model.parameters()).device
    model.eval()
    z = predict_batches(lambda x, s: model.encode(x, s), counts, sp_t, device=device, progress=cfg.progress,
                        desc=f"{name} embed")
    labels = None
    if label_key is not None and all(label_key in a.obs for a in adatas.values()):
        labels = np.concatenate([a.obs[label_key].astype(str).to_numpy() for a in adatas.values()])
    reports = {k: {s: str(r) for s, r in v.reports.items()} for k, v in sets.items()}
    return Pretrained(model=model, axis=axis, counts=counts, cell_species=cell_species, species=species_names,
                      obs=stacked_obs(adatas), labels=labels, train_idx=train_idx, val_idx=val_idx,
                      history=history, embedding=z, extra=extra, reports=reports)


def metric_learn(
    pre: Pretrained,
    *,
    label_mode: str | None = None,
    labelled_species: Sequence[str] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    name: str = "unify",
    normalize: bool = True,
) -> tuple[MacrogeneIntegrator, TrainResult, np.ndarray]:
    """Phase 2 on a copy of the pretrained model: semi-hard triplets on weak labels.

    ``label_mode`` (default: the config's): ``"weak"`` = species-prefixed labels read at
    pretraining, ``"clusters"`` = per-species k-means of the pretrained embedding (label-free).
    ``labelled_species`` (weak mode only): the species whose labels are used; the other species'
    cells get k-means clusters instead, so their labels are never seen (annotating a new species).
    Default: every species. Fixed number of epochs, last epoch kept. Returns (model, history,
    embedding): L2-normalised, or with ``normalize=False`` the encoder output as SATURN stores and
    scores it (its triplet loss is on cosine distance, its embedding is not normalised).
    """
    cfg = copy.deepcopy(pre.model.config)
    cfg.label_mode = label_mode or cfg.label_mode
    if cfg.label_mode not in ("weak", "clusters"):
        raise ScpriorInputError(f"metric learning needs label_mode 'weak' or 'clusters', got {cfg.label_mode!r}.")
    if cfg.label_mode == "weak":
        if pre.labels is None:
            raise ScpriorInputError("Weak-label metric learning needs labels: pass label_key at pretraining, "
                                    "or use label_mode='clusters' (label-free).")
        weak = species_prefixed(pre.labels, np.asarray(pre.species)[pre.cell_species])
        if labelled_species is not None:
            names = [get_species(s).name for s in labelled_species]
            unknown = sorted(set(names) - set(pre.species))
            if unknown:
                raise ScpriorInputError(f"labelled_species {unknown} are not among the trained species {pre.species}.")
            unlabelled = ~np.isin(np.asarray(pre.species)[pre.cell_species], names)
            if unlabelled.any():
                clusters = cluster_labels(pre.embedding, pre.cell_species, n_clusters=cfg.n_clusters, seed=cfg.seed)
                weak = np.where(unlabelled, clusters, weak)
    else:
        weak = cluster_labels(pre.embedding, pre.cell_species, n_clusters=cfg.n_clusters, seed=cfg.seed)
    model = copy.deepcopy(pre.model)
    model.config = cfg
    codes = torch.as_tensor(pd.factorize(weak)[0])
    sp_t = torch.as_tensor(pre.cell_species)
    tr, va = pre.train_idx, pre.val_idx
    freeze_for_metric_learning(model)
    met_cfg = TrainConfig(max_epochs=cfg.metric_epochs, lr=cfg.metric_lr, patience=None, restore_best=False,
                          seed=cfg.seed, device=cfg.device, progress=cfg.progress, desc=f"{name} metric")
    val = (rows_loader(pre.counts[va], sp_t[va], codes[va], batch_size=cfg.batch_size) if len(va) else None)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    extra = {**pre.extra, "config": asdict(cfg)}
    history = fit(model, metric_loss,
                  rows_loader(pre.counts[tr], sp_t[tr], codes[tr], batch_size=cfg.batch_size, shuffle=True,
                              seed=cfg.seed + 1),
                  val, met_cfg, checkpoint=ckpt / f"{name}_metric.pt" if ckpt else None, extra_state=extra)
    model.eval()
    device = next(model.parameters()).device
    fn = (lambda x, s: F.normalize(model.encode(x, s), dim=1)) if normalize else model.encode
    z = predict_batches(fn, pre.counts, sp_t, device=device, progress=cfg.progress, desc=f"{name} embed")
    return model, history, z


def as_result(pre: Pretrained, model: MacrogeneIntegrator, z: np.ndarray, *, key: str, name: str,
              metric: TrainResult | None = None) -> IntegrationResult:
    """Package an embedding of ``pre``'s cells as an :class:`IntegrationResult` (new AnnData)."""
    out = ad.AnnData(obs=pre.obs.copy())
    out.obsm[key] = np.asarray(z, dtype=np.float32)
    out.uns[f"{key}_params"] = {"method": name, "sets": list(model.macrogenes),
                                "label_mode": model.config.label_mode if metric is not None else "none",
                                "n_genes_axis": int(len(pre.axis)), "seed": model.config.seed}
    return IntegrationResult(adata=out, weights=model.weights_frame(pre.axis), model=model, axis=pre.axis,
                             pretrain=pre.history, metric=metric, reports=pre.reports)


def integrate(
    adatas: Mapping[str, ad.AnnData],
    embeddings: Mapping[str, Mapping[str, GeneEmbeddings]],
    *,
    config: MacrogeneIntegratorConfig | None = None,
    label_key: str | None = "cell_type",
    layer: str = "counts",
    key: str = "X_unify",
    checkpoint_dir: str | os.PathLike | None = None,
    name: str = "unify",
) -> IntegrationResult:
    """Integrate the species in ``adatas`` (species -> AnnData of raw counts) through macrogenes.

    ``embeddings``: set name -> species -> :class:`GeneEmbeddings`; one set (``{"protein": ...}``)
    is the SATURN setting, two (``protein`` + ``text``) the Unify one. ``label_key`` names the
    weak labels (``config.label_mode="weak"``); it is not needed for ``"clusters"``/``"none"``.
    Returns the cells of all species concatenated (obs kept, ``obs['species']`` set) with the
    embedding in ``obsm[key]`` (L2-normalised after metric learning), and the weights DataFrame.
    Checkpoints (``<name>_pretrain.pt``, ``<name>_metric.pt``) go to ``checkpoint_dir`` if given.
    The input AnnData objects are not modified.
    """
    cfg = config or MacrogeneIntegratorConfig()
    pre = pretrain(adatas, embeddings, config=cfg, label_key=label_key, layer=layer,
                   checkpoint_dir=checkpoint_dir, name=name)
    if cfg.label_mode == "none" or cfg.metric_epochs <= 0:
        return as_result(pre, pre.model, pre.embedding, key=key, name=name)
    model, history, z = metric_learn(pre, checkpoint_dir=checkpoint_dir, name=name)
    return as_result(pre, model, z, key=key, name=name, metric=history)


def load_integrator(path: str | os.PathLike) -> tuple[MacrogeneIntegrator, pd.DataFrame]:
    """Rebuild a trained integrator and its gene axis from a checkpoint written by :func:`integrate`."""
    from scprior.models.training import load_checkpoint  # tensors + plain data only (weights_only)

    state = load_checkpoint(path, what="integrator checkpoint")
    try:
        cfg = MacrogeneIntegratorConfig(**state["config"])
    except (KeyError, TypeError) as exc:
        raise ScpriorInputError(f"{path} is not an integrator checkpoint ({exc}); pass the file its training wrote.") from None
    axis = pd.DataFrame(state["axis"])
    species = list(state["species"])
    layers = {k: MacrogeneLayer(len(axis), m, d, learnable=cfg.learn_weights) for k, (m, d) in state["sets"].items()}
    gene_species = np.asarray([species.index(s) for s in axis["species"]])
    model = MacrogeneIntegrator(layers, gene_species, len(species), cfg)
    model.load_state_dict(state["model_state"])
    model.eval()
    return model, axis


def embed(model: MacrogeneIntegrator, axis: pd.DataFrame, adata: ad.AnnData, species: str, *,
          layer: str = "counts", normalize: bool = True, batch_size: int = 1024) -> np.ndarray:
    """Embed new cells of ``species`` with a trained integrator (genes matched to the axis by symbol;
    axis genes the data lacks count as zero). Returns (n_cells, latent_dim)."""
    name = get_species(species).name
    check_counts(adata, layer=layer or None)
    mask = (axis["species"] == name).to_numpy()
    if not mask.any():
        raise ScpriorInputError(f"The model was not trained on {name}; it knows {sorted(axis['species'].unique())}.")
    genes = axis.loc[mask, "gene"].tolist()
    present = [g for g in genes if g in adata.var_names]
    if not present:
        raise ScpriorInputError(f"None of the model's {name} genes is in adata.var_names; check the gene symbols.")
    sub = adata[:, present]
    mat = sp.csr_matrix(sub.layers[layer] if layer else sub.X, dtype=np.float32)
    cols = np.flatnonzero(mask)[[genes.index(g) for g in present]]
    full = sp.csr_matrix((mat.data, cols[mat.indices], mat.indptr), shape=(mat.shape[0], len(axis)))
    device = next(model.parameters()).device
    model.eval()
    code = pd.unique(axis["species"]).tolist().index(name)
    codes = torch.full((full.shape[0],), code, dtype=torch.long)
    fn = (lambda x, s: F.normalize(model.encode(x, s), dim=1)) if normalize else model.encode
    return predict_batches(fn, full, codes, device=device, batch_size=batch_size)

