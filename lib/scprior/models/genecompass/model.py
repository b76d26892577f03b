"""The GeneCompass network: knowledge-embedding token MLP, species token, BERT encoder, MLM heads.

Token ``i`` of a cell (GeneCompass ``KnowledgeBertEmbeddings``)::

    concat(word_embedding[id], value, alpha * W_p prior_p[id] for each prior p)
      -> cat_fc -> LayerNorm -> QuickGELU -> cat_proj        (the knowledge MLP)
      + position_embedding[rank] -> LayerNorm -> dropout

then the species embedding (human 0, mouse 1) is prepended as the first token and a post-LN BERT
encoder runs over ``1 + top_k`` tokens (padding masked). Two heads read the last layer: gene-id
logits over the vocabulary and the gene's value. ``alpha`` is the prior warm-up: it ramps
linearly from 0 to 1 over ``prior_warmup_steps`` training steps (GeneCompass's ``EmbeddingWarmup``
starts at alpha = 1 and so never ramps).

Shapes: ``ids``/``values`` (B, L) with PAD = 0 after a cell's last gene, ``species`` (B,).
``forward`` -> (B, 1 + L, hidden); :meth:`GeneCompassModel.gene_embeddings` -> (B, L, hidden)
(contextual gene embeddings of the last layer, zero at padding); :meth:`cell_embedding` -> (B, hidden).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scprior.errors import ScpriorInputError
from scprior.models.genecompass.encoding import MASK, PAD


@dataclass
class GeneCompassConfig:
    """Architecture. Defaults are GeneCompass's released base model (768-d, 12 layers, 12 heads,
    2048 genes); the notebook's CPU config is far smaller (params.yaml)."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    dropout: float = 0.02
    activation: str = "gelu"          # encoder feed-forward (BERT: exact GELU)
    top_k: int = 2048                 # genes per cell (= position embeddings)
    use_values: bool = True           # concat the raw value to the token (GeneCompass: True)
    priors: tuple[str, ...] = ()      # prior names, in concat order
    prior_dims: dict[str, int] = field(default_factory=dict)
    prior_warmup_steps: int = 0       # 0: priors at full weight from the start
    pooling: str = "mean"             # cell embedding: "mean" of gene tokens or the species "cls" token
    layer_norm_eps: float = 1e-12
    vocab_size: int = 0               # set from the vocabulary

    def __post_init__(self) -> None:
        self.priors = tuple(self.priors)
        self.prior_dims = {str(k): int(v) for k, v in dict(self.prior_dims).items()}
        if self.hidden_size % self.num_heads:
            raise ScpriorInputError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}).")
        if self.pooling not in {"mean", "cls"}:
            raise ScpriorInputError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}.")


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation of GeneCompass's knowledge MLP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class KnowledgeEmbeddings(nn.Module):
    """Gene tokens from id, value and priors (see the module docstring); (B, L) -> (B, L, hidden)."""

    def __init__(self, config: GeneCompassConfig, priors: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        c = config
        d = c.hidden_size
        self.word_embeddings = nn.Embedding(c.vocab_size, d, padding_idx=PAD)
        self.prior_names = list(c.priors)
        self.prior_proj = nn.ModuleDict()
        missing = [p for p in self.prior_names if p not in priors or p not in c.prior_dims]
        if missing:
            raise ScpriorInputError(f"No table/dimension for prior(s) {missing}: build the model with build_model().")
        for name in self.prior_names:
            table = torch.as_tensor(np.asarray(priors[name], dtype=np.float32))
            if table.shape != (c.vocab_size, c.prior_dims[name]):
                raise ScpriorInputError(f"Prior {name!r} table has shape {tuple(table.shape)}, expected "
                                        f"({c.vocab_size}, {c.prior_dims[name]}) (one row per token).")
            self.register_buffer(f"prior_{name}", table)
            self.prior_proj[name] = nn.Linear(c.prior_dims[name], d)
        n_in = d * (1 + len(self.prior_names)) + (1 if c.use_values else 0)
        self.concat = nn.Sequential()
        self.concat.add_module("cat_fc", nn.Linear(n_in, d))
        self.concat.add_module("cat_ln", nn.LayerNorm(d))
        self.concat.add_module("cat_gelu", QuickGELU())
        self.concat.add_module("cat_proj", nn.Linear(d, d))
        self.position_embeddings = nn.Embedding(c.top_k, d)
        self.LayerNorm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.use_values = c.use_values
        self.warmup_steps = int(c.prior_warmup_steps)
        self.register_buffer("warmup_step", torch.zeros((), dtype=torch.long))

    @property
    def alpha(self) -> float:
        """Current prior weight: min(1, training steps taken / prior_warmup_steps)."""
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, float(self.warmup_step) / self.warmup_steps)

    def forward(self, ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.position_embeddings.num_embeddings:
            raise ScpriorInputError(f"{ids.shape[1]} genes per cell exceed the model's top_k "
                                    f"({self.position_embeddings.num_embeddings}).")
        parts = [self.word_embeddings(ids)]
        if self.use_values:
            parts.append(values.unsqueeze(-1).to(parts[0].dtype))
        alpha = self.alpha
        for name in self.prior_names:
            parts.append(alpha * self.prior_proj[name](getattr(self, f"prior_{name}")[ids]))
        if self.training and self.warmup_steps > 0:
            self.warmup_step += 1
        x = self.concat(torch.cat(parts, dim=-1))
        x = x + self.position_embeddings.weight[: ids.shape[1]]
        return self.dropout(self.LayerNorm(x))


class PredictionHead(nn.Module):
    """BERT LM head: dense -> GELU -> LayerNorm -> decoder (hidden -> n_out)."""

    def __init__(self, hidden: int, n_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.decoder = nn.Linear(hidden, n_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(F.gelu(self.dense(h))))


class GeneCompassModel(nn.Module):
    """GeneCompass encoder with its two masked-gene heads; priors are buffers (saved with it)."""

    def __init__(self, config: GeneCompassConfig, priors: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        priors = dict(priors or {})
        c = config
        if c.vocab_size < 3:
            raise ScpriorInputError("vocab_size must be set from the vocabulary (>= 3 tokens).")
        self.config = c
        self.embeddings = KnowledgeEmbeddings(c, priors)
        self.cls_embedding = nn.Embedding(2, c.hidden_size)
        layer = nn.TransformerEncoderLayer(c.hidden_size, c.num_heads, c.intermediate_size, c.dropout,
                                           activation=c.activation, batch_first=True,
                                           layer_norm_eps=c.layer_norm_eps)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.id_head = PredictionHead(c.hidden_size, c.vocab_size, c.layer_norm_eps)
        self.value_head = PredictionHead(c.hidden_size, 1, c.layer_norm_eps)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states (B, 1 + L, hidden); position 0 is the species token."""
        x = self.embeddings(ids, values)
        cls = self.cls_embedding(species.reshape(-1).long())[:, None, :]
        x = torch.cat([cls, x], dim=1)
        pad = torch.cat([torch.zeros_like(ids[:, :1], dtype=torch.bool), ids == PAD], dim=1)
        return self.encoder(x, src_key_padding_mask=pad)

    def gene_embeddings(self, ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Contextual gene embeddings of the last layer (B, L, hidden), aligned with ``ids``; 0 at PAD."""
        h = self.forward(ids, values, species)[:, 1:]
        return h * (ids != PAD).unsqueeze(-1)

    def cell_embedding(self, ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Cell embedding (B, hidden): mean of the gene tokens (``pooling="mean"``) or the species token."""
        h = self.forward(ids, values, species)
        if self.config.pooling == "cls":
            return h[:, 0]
        keep = (ids != PAD).unsqueeze(-1).to(h.dtype)
        return (h[:, 1:] * keep).sum(1) / keep.sum(1).clamp_min(1.0)


# ------------------------------------------------------------------------------ pretraining
def random_mask(ids: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli(``fraction``) mask over the real (non-PAD) tokens (B, L) bool; every cell with a
    gene gets at least one masked token."""
    u = torch.rand(ids.shape, generator=generator, device="cpu").to(ids.device)
    real = ids != PAD
    mask = (u < fraction) & real
    # cells left without a masked token mask their highest-u real token
    empty = ~mask.any(1) & real.any(1)
    if empty.any():
        best = torch.where(real, u, torch.full_like(u, -1.0)).argmax(1)
        mask[empty, best[empty]] = True
    return mask


def masked_gene_loss(model: GeneCompassModel, ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor,
                     mask: torch.Tensor, *, id_weight: float = 0.2, value_weight: float = 0.8) -> dict[str, torch.Tensor]:
    """GeneCompass's loss on the masked tokens: ``id_weight`` * CE(gene id) + ``value_weight`` * MSE(value).

    Masked tokens enter as the MASK id with value 0; only masked positions are scored.
    """
    inp_ids = ids.masked_fill(mask, MASK)
    inp_vals = values.masked_fill(mask, 0.0)
    h = model(inp_ids, inp_vals, species)[:, 1:][mask]
    ce = F.cross_entropy(model.id_head(h), ids[mask])
    mse = F.mse_loss(model.value_head(h).squeeze(-1), values[mask])
    return {"loss": id_weight * ce + value_weight * mse, "id_ce": ce, "value_mse": mse}


def mlm_loss_fn(fraction: float = 0.15, id_weight: float = 0.2, value_weight: float = 0.8):
    """A ``loss_fn`` for :func:`scprior.models.training.fit`: batches ``(ids, values, species)`` are
    masked at random (training); ``(ids, values, species, mask)`` use their fixed mask (validation)."""

    def loss_fn(model, batch, epoch):
        ids, values, species, *rest = batch
        mask = rest[0].bool() if rest else random_mask(ids, fraction)
        return masked_gene_loss(model, ids, values, species, mask, id_weight=id_weight, value_weight=value_weight)

    return loss_fn
