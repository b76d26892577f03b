"""A CPA-style compositional perturbation autoencoder (Lotfollahi et al. 2023; chemCPA's drug side).

A cell's counts ``x`` (n_genes,) are encoded to a **basal latent** ``z_b`` that adversaries try to
classify into drug and covariates; through a gradient-reversal layer the encoder learns to make
``z_b`` carry no drug or covariate information. The decoder reads the composition

    z = z_b + s_k(dose) * e_k + sum_j c_j[covariate_j]

where ``e_k`` is the drug embedding (``"learned"``: one vector per drug; ``"fingerprint"``: an MLP of
the drug's Morgan fingerprint, chemCPA's idea, so unseen drugs get an embedding), ``s_k`` a learned
**dose-response curve** of Hill form ``sigmoid(h_k * (log10 dose - c_k))`` whose slope and midpoint
come from the drug embedding (0 for vehicle cells), and ``c_j`` covariate embeddings. The decoder
gives a negative-binomial distribution per gene: ``mu = softmax(h(z) W^T + b) * library`` with a
per-gene inverse dispersion. **Knowledge-informed genes** (switchable): ``W = W_free + P(E_gene)``,
where ``E_gene`` (n_genes, d) are gene embeddings from the knowledge layer (a fixed buffer) and ``P``
a trained projection, so genes with similar prior knowledge start with similar output weights.

Every layer is created in ``__init__`` and trained; :meth:`CPA.predict` creates nothing (the
GeneCompass defect of a fresh ``nn.Linear`` inside ``predict`` is not copied). The adversary trains
through the same single optimiser as the rest (gradient reversal), so the one training loop
:func:`scprior.models.training.fit` serves it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scprior.errors import ScpriorInputError
from scprior.models.layers import GradientReversal, mlp
from scprior.safe_io import load_torch_tensors, save_torch_atomic

DRUG_EMBEDDINGS = ("learned", "fingerprint")


@dataclass
class CPAConfig:
    """Sizes and switches of :class:`CPA`."""

    n_genes: int
    n_drugs: int
    covariate_levels: list[int] = field(default_factory=list)  # levels of each covariate key
    latent_dim: int = 32
    encoder_hidden: list[int] = field(default_factory=lambda: [128])
    decoder_hidden: list[int] = field(default_factory=lambda: [128])
    adversary_hidden: int = 64
    adversary_weight: float = 1.0          # gradient-reversal scale; 0 switches the adversary off
    drug_embedding: str = "learned"        # learned | fingerprint
    fingerprint_hidden: int = 64
    use_gene_embeddings: bool = True       # knowledge-informed decoder (needs gene_embeddings)
    dropout: float = 0.1
    target_sum: float = 1e4

    def __post_init__(self) -> None:
        if self.drug_embedding not in DRUG_EMBEDDINGS:
            raise ScpriorInputError(f"drug_embedding must be one of {DRUG_EMBEDDINGS}, got {self.drug_embedding!r}.")
        if self.n_genes < 1 or self.n_drugs < 1:
            raise ScpriorInputError(f"CPA needs >= 1 gene and >= 1 drug (got {self.n_genes}, {self.n_drugs}).")


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative-binomial log-likelihood of counts ``x`` (mean ``mu``, inverse dispersion ``theta``)."""
    log_theta_mu = torch.log(theta + mu + eps)
    return (theta * (torch.log(theta + eps) - log_theta_mu) + x * (torch.log(mu + eps) - log_theta_mu)
            + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0))


class CPA(nn.Module):
    """CPA-style model. Batches are dicts of tensors: ``counts`` (B, G), ``drug`` (B,) long (any
    index for vehicle), ``dose`` (B,) float (0 = vehicle), ``covariates`` (B, K) long.

    ``drug_features`` (n_drugs, F): fingerprints, required for ``drug_embedding="fingerprint"``;
    ``gene_embeddings`` (n_genes, d): knowledge-layer vectors, used when ``use_gene_embeddings``;
    ``log_dose_center`` / ``log_dose_scale``: standardisation of log10 dose (set from training doses).
    """

    def __init__(self, config: CPAConfig, *, drug_features: torch.Tensor | np.ndarray | None = None,
                 gene_embeddings: torch.Tensor | np.ndarray | None = None,
                 log_dose_center: float = 0.0, log_dose_scale: float = 1.0) -> None:
        super().__init__()
        self.config = cfg = config
        d = cfg.latent_dim
        self.encoder = nn.Sequential(mlp([cfg.n_genes, *cfg.encoder_hidden], dropout=cfg.dropout),
                                     nn.Linear(cfg.encoder_hidden[-1] if cfg.encoder_hidden else cfg.n_genes, d))
        if cfg.drug_embedding == "fingerprint":
            if drug_features is None:
                raise ScpriorInputError("drug_embedding='fingerprint' needs drug_features (n_drugs x bits).")
            feats = torch.as_tensor(np.asarray(drug_features), dtype=torch.float32)
            if feats.shape[0] != cfg.n_drugs:
                raise ScpriorInputError(f"drug_features has {feats.shape[0]} rows for {cfg.n_drugs} drugs.")
            self.register_buffer("drug_features", feats)
            self.drug_encoder = nn.Sequential(nn.Linear(feats.shape[1], cfg.fingerprint_hidden), nn.ReLU(),
                                              nn.Linear(cfg.fingerprint_hidden, d))
            self.drug_table = None
        else:
            self.register_buffer("drug_features", torch.zeros(cfg.n_drugs, 0))
            self.drug_encoder = None
            self.drug_table = nn.Embedding(cfg.n_drugs, d)
            nn.init.normal_(self.drug_table.weight, std=0.5)
        self.dose_head = nn.Linear(d, 2)  # -> (slope, midpoint) of the drug's Hill curve
        nn.init.zeros_(self.dose_head.weight)
        nn.init.constant_(self.dose_head.bias, 0.0)
        self.register_buffer("log_dose_center", torch.tensor(float(log_dose_center)))
        self.register_buffer("log_dose_scale", torch.tensor(float(max(log_dose_scale, 1e-3))))
        self.covariate_tables = nn.ModuleList([nn.Embedding(n, d) for n in cfg.covariate_levels])
        self.decoder = mlp([d, *cfg.decoder_hidden], dropout=cfg.dropout)
        hidden = cfg.decoder_hidden[-1] if cfg.decoder_hidden else d
        self.gene_weight = nn.Parameter(torch.randn(cfg.n_genes, hidden) / math.sqrt(hidden))
        self.gene_bias = nn.Parameter(torch.zeros(cfg.n_genes))
        self.log_theta = nn.Parameter(torch.full((cfg.n_genes,), 1.0))
        if cfg.use_gene_embeddings:
            if gene_embeddings is None:
                raise ScpriorInputError("use_gene_embeddings=True needs gene_embeddings (n_genes x dim).")
            emb = torch.as_tensor(np.asarray(gene_embeddings), dtype=torch.float32)
            if emb.shape[0] != cfg.n_genes:
                raise ScpriorInputError(f"gene_embeddings has {emb.shape[0]} rows for {cfg.n_genes} genes.")
            norms = emb.norm(dim=1, keepdim=True)
            self.register_buffer("gene_embeddings", emb / norms.clamp_min(1e-8))
            self.gene_projection = nn.Linear(emb.shape[1], hidden, bias=False)
        else:
            self.register_buffer("gene_embeddings", torch.zeros(cfg.n_genes, 0))
            self.gene_projection = None
        self.reverse = GradientReversal(cfg.adversary_weight)
        self.drug_adversary = nn.Sequential(nn.Linear(d, cfg.adversary_hidden), nn.ReLU(),
                                            nn.Linear(cfg.adversary_hidden, cfg.n_drugs + 1))
        self.covariate_adversaries = nn.ModuleList([
            nn.Sequential(nn.Linear(d, cfg.adversary_hidden), nn.ReLU(), nn.Linear(cfg.adversary_hidden, n))
            for n in cfg.covariate_levels])

    # ------------------------------------------------------------------ parts
    def normalise(self, counts: torch.Tensor) -> torch.Tensor:
        """log1p of counts scaled to ``target_sum`` per cell (the encoder's input)."""
        lib = counts.sum(1, keepdim=True).clamp_min(1.0)
        return torch.log1p(counts / lib * self.config.target_sum)

    def basal(self, counts: torch.Tensor) -> torch.Tensor:
        """Basal latent (B, latent_dim) of counts (B, G)."""
        return self.encoder(self.normalise(counts))

    def drug_embeddings(self) -> torch.Tensor:
        """Embedding of every drug (n_drugs, latent_dim)."""
        if self.drug_encoder is not None:
            return self.drug_encoder(self.drug_features)
        return self.drug_table.weight

    def dose_response(self, drug: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        """Learned dose-response ``s_k(dose)`` in [0, 1] (B,); exactly 0 where ``dose == 0``."""
        emb = self.drug_embeddings()[drug]
        slope_raw, mid = self.dose_head(emb).unbind(-1)
        slope = F.softplus(slope_raw + 1.0) + 0.05
        logd = (torch.log10(dose.clamp_min(1e-12)) - self.log_dose_center) / self.log_dose_scale
        return torch.where(dose > 0, torch.sigmoid(slope * (logd - mid)), torch.zeros_like(dose))

    def compose(self, z_basal: torch.Tensor, drug: torch.Tensor, dose: torch.Tensor,
                covariates: torch.Tensor) -> torch.Tensor:
        """``z_b + s_k(dose) e_k + sum_j c_j`` (B, latent_dim)."""
        z = z_basal + self.dose_response(drug, dose)[:, None] * self.drug_embeddings()[drug]
        for j, table in enumerate(self.covariate_tables):
            z = z + table(covariates[:, j])
        return z

    def gene_matrix(self) -> torch.Tensor:
        """Per-gene output weights (n_genes, hidden): free weights (+ projected knowledge embeddings)."""
        if self.gene_projection is None:
            return self.gene_weight
        return self.gene_weight + self.gene_projection(self.gene_embeddings)

    def decode(self, z: torch.Tensor, library: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NB mean (B, G) for library sizes (B,) and inverse dispersion (G,)."""
        logits = self.decoder(z) @ self.gene_matrix().T + self.gene_bias
        mu = torch.softmax(logits, dim=-1) * library[:, None]
        return mu, F.softplus(self.log_theta) + 1e-4

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reconstruction of the batch's own condition: ``mu``, ``theta``, ``z_basal``."""
        counts = batch["counts"]
        zb = self.basal(counts)
        mu, theta = self.decode(self.compose(zb, batch["drug"], batch["dose"], batch["covariates"]), counts.sum(1))
        return {"mu": mu, "theta": theta, "z_basal": zb}

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training objective: NB negative log-likelihood per gene + adversary cross-entropies.

        In eval mode (the validation pass of the training loop) ``loss`` is the NB term only, so
        early stopping watches reconstruction, not the adversarial game.
        """
        out = self(batch)
        nll = -nb_log_prob(batch["counts"], out["mu"], out["theta"]).mean()
        treated = batch["dose"] > 0
        drug_label = torch.where(treated, batch["drug"] + 1, torch.zeros_like(batch["drug"]))
        zr = self.reverse(out["z_basal"])
        adv = F.cross_entropy(self.drug_adversary(zr), drug_label)
        for j, head in enumerate(self.covariate_adversaries):
            adv = adv + F.cross_entropy(head(zr), batch["covariates"][:, j])
        use_adv = self.config.adversary_weight > 0
        total = nll + adv if (self.training and use_adv) else nll
        return {"loss": total, "nll": nll.detach(), "adversary_ce": adv.detach()}

    # ------------------------------------------------------------------ inference (no new layers)
    @torch.no_grad()
    def predict(self, counts: torch.Tensor, drug: torch.Tensor, dose: torch.Tensor, covariates: torch.Tensor,
                library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Counterfactual NB parameters: encode ``counts`` (e.g. vehicle cells), swap in the given
        drug, dose and covariates, decode. Returns ``mu`` (B, G) and ``theta`` (G,). Creates no
        parameters and leaves the model's training mode as it was."""
        was = self.training
        self.eval()
        try:
            zb = self.basal(counts)
            lib = counts.sum(1) if library is None else library
            mu, theta = self.decode(self.compose(zb, drug, dose, covariates), lib)
        finally:
            self.train(was)
        return {"mu": mu, "theta": theta}

    @torch.no_grad()
    def embed_basal(self, counts: torch.Tensor) -> torch.Tensor:
        """Basal latent of ``counts`` in eval mode (B, latent_dim)."""
        was = self.training
        self.eval()
        try:
            return self.basal(counts)
        finally:
            self.train(was)

    @torch.no_grad()
    def curve(self, drug: int, doses: np.ndarray) -> np.ndarray:
        """The learned dose-response ``s_k`` of drug index ``drug`` at ``doses`` (same units as training)."""
        d = torch.as_tensor(np.asarray(doses, dtype=np.float32), device=self.gene_bias.device)
        k = torch.full_like(d, int(drug), dtype=torch.long)
        return self.dose_response(k, d).cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """State dict + config (+ plain ``extra`` data) via :func:`scprior.safe_io.save_torch_atomic`."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return save_torch_atomic({"config": asdict(self.config), "state": state, "extra": dict(extra or {})}, path)

    @classmethod
    def load(cls, path: str | Path) -> CPA:
        """Rebuild a saved model (tensors and plain data only; never runs code from the file)."""
        blob = load_torch_tensors(path, what="CPA checkpoint")
        if not isinstance(blob, dict) or not {"config", "state"} <= set(blob):
            raise ScpriorInputError(f"{path} is not a scprior CPA checkpoint (needs 'config' and 'state').")
        cfg = CPAConfig(**blob["config"])
        state = blob["state"]
        model = cls(cfg, drug_features=state.get("drug_features") if cfg.drug_embedding == "fingerprint" else None,
                    gene_embeddings=state.get("gene_embeddings") if cfg.use_gene_embeddings else None)
        model.load_state_dict(state)
        return model


def cpa_loss(model: CPA, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
    """Loss function for :func:`scprior.models.training.fit`."""
    del epoch
    return model.loss(batch)
