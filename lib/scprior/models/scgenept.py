"""scGenePT: a scGPT-style transformer over gene tokens, with a language embedding per gene.

Each gene is a token. Its input vector is the sum of

- a learned gene-id embedding (``encoder``: Embedding + LayerNorm, scGPT's ``GeneEncoder``),
- an embedding of its expression value in the control cell (``value_encoder``: Linear(1, d) ->
  ReLU -> Linear(d, d) -> LayerNorm, scGPT's ``ContinuousValueEncoder``),
- a perturbation-flag embedding (``pert_encoder``: 0 not perturbed, 1 perturbed, 2 padding),
- for scGenePT only: a fixed language embedding of the gene (text of its NCBI description and GO
  terms, here MiniLM) projected by Linear + LayerNorm (``lang_encoder``),

followed by a LayerNorm (``ln``), a TransformerEncoder and scGPT's ``ExprDecoder`` (MLP, one value
per token): the predicted expression of each gene after the perturbation (scGPT decodes it
directly; with ``residual=True`` the decoder gives the change, added to the control value, as
GEARS does, which trains far faster on a CPU budget). Without a language table
the model is the scGPT setting (the ablation). Module and parameter names follow scGPT's
``TransformerGenerator`` so real scGPT weights map onto it
(:mod:`scprior.models.scgpt_checkpoint`).

Perturbed genes that are not among the measured genes (common in small panels) enter as extra
tokens (value 0, flag 1) appended after the measured genes; their outputs are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from scprior.errors import ScpriorInputError

FLAG_OFF, FLAG_ON, FLAG_PAD = 0, 1, 2


@dataclass
class ScGenePTConfig:
    """Architecture of :class:`ScGenePT`. ``n_tokens`` includes the padding token (the last id)."""

    n_tokens: int
    n_measured: int
    d_model: int = 64
    nhead: int = 4
    d_hid: int = 128
    nlayers: int = 2
    dropout: float = 0.0
    lang_dim: int | None = None
    max_value: float = 512.0
    residual: bool = False  # True: output = control value + decoded change (GEARS-style)

    def __post_init__(self) -> None:
        if self.nhead < 1 or self.d_model % self.nhead:
            raise ScpriorInputError(
                f"nhead ({self.nhead}) must divide d_model ({self.d_model}): attention splits the embedding "
                "into nhead equal parts. Choose e.g. nhead=4 with d_model=64.")

    @property
    def pad_id(self) -> int:
        return self.n_tokens - 1


class GeneEncoder(nn.Module):
    """Gene-id embedding followed by LayerNorm (scGPT ``GeneEncoder``)."""

    def __init__(self, n_tokens: int, d_model: int, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, d_model, padding_idx=pad_id)
        self.enc_norm = nn.LayerNorm(d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.enc_norm(self.embedding(tokens))


class ValueEncoder(nn.Module):
    """Continuous value -> vector: Linear(1, d), ReLU, Linear(d, d), LayerNorm (scGPT's)."""

    def __init__(self, d_model: int, dropout: float, max_value: float):
        super().__init__()
        self.linear1 = nn.Linear(1, d_model)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.max_value = max_value

    def forward(self, values: Tensor) -> Tensor:
        x = torch.clamp(values.unsqueeze(-1), max=self.max_value)
        return self.dropout(self.norm(self.linear2(self.activation(self.linear1(x)))))


class LanguageEncoder(nn.Module):
    """Fixed per-token language vectors projected to ``d_model``: Linear + LayerNorm (scGenePT)."""

    def __init__(self, table: Tensor, d_model: int):
        super().__init__()
        self.register_buffer("table", table.float())
        self.proj = nn.Linear(table.shape[1], d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        # project the whole table once (row-wise ops, so identical to projecting the gathered rows)
        return self.norm(self.proj(self.table))[tokens]


class ExprDecoder(nn.Module):
    """scGPT's ``ExprDecoder``: Linear-LeakyReLU-Linear-LeakyReLU-Linear(d, 1) per token."""

    def __init__(self, d_model: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(d_model, d_model), nn.LeakyReLU(), nn.Linear(d_model, d_model),
                                nn.LeakyReLU(), nn.Linear(d_model, 1))

    def forward(self, h: Tensor) -> Tensor:
        return self.fc(h).squeeze(-1)


class ScGenePT(nn.Module):
    """scGenePT (with ``language_table``) or the scGPT setting (without); see the module docstring.

    ``language_table``: (n_tokens, lang_dim) fixed vectors, row ``pad_id`` zeros.
    """

    def __init__(self, config: ScGenePTConfig, language_table: Tensor | np.ndarray | None = None):
        super().__init__()
        self.config = config
        d = config.d_model
        self.encoder = GeneEncoder(config.n_tokens, d, config.pad_id)
        self.value_encoder = ValueEncoder(d, config.dropout, config.max_value)
        self.pert_encoder = nn.Embedding(3, d, padding_idx=FLAG_PAD)
        self.lang_encoder: LanguageEncoder | None = None
        if language_table is not None:
            table = torch.as_tensor(np.asarray(language_table), dtype=torch.float32)
            if table.shape[0] != config.n_tokens:
                raise ValueError(f"language_table has {table.shape[0]} rows; the model has {config.n_tokens} tokens.")
            if config.lang_dim is not None and table.shape[1] != config.lang_dim:
                raise ValueError(f"language_table is {table.shape[1]}-d; config.lang_dim is {config.lang_dim}.")
            self.config.lang_dim = int(table.shape[1])
            self.lang_encoder = LanguageEncoder(table, d)
        self.ln = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, config.nhead, config.d_hid, config.dropout, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, config.nlayers, enable_nested_tensor=False)
        self.decoder = ExprDecoder(d)
        nn.init.uniform_(self.encoder.embedding.weight, -0.1, 0.1)  # scGPT's init_weights
        with torch.no_grad():
            self.encoder.embedding.weight[config.pad_id].zero_()

    @property
    def uses_language(self) -> bool:
        return self.lang_encoder is not None

    def forward(self, tokens: Tensor, values: Tensor, flags: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """tokens, flags: (B, L) long; values: (B, L) float; padding_mask: (B, L) bool (True = pad).

        Returns (B, L): the predicted expression of every token's gene.
        """
        h = self.encoder(tokens) + self.value_encoder(values) + self.pert_encoder(flags)
        if self.lang_encoder is not None:
            h = h + self.lang_encoder(tokens)
        h = self.transformer_encoder(self.ln(h), src_key_padding_mask=padding_mask)
        return self.decoder(h)

    # ------------------------------------------------------------------ cells -> token sequences
    def forward_cells(self, x_ctrl: Tensor, pert_tokens: Tensor, gene_subset: Tensor | None = None) -> Tensor:
        """Predict perturbed expression from control cells.

        ``x_ctrl``: (B, n_measured) control expression; ``pert_tokens``: (B, 2) token ids of the
        perturbed genes (-1 = none); ``gene_subset``: (L,) measured-gene ids to model (default all).
        Returns (B, L) predictions for ``gene_subset``.
        """
        tokens, values, flags, mask, n_genes = build_sequence(x_ctrl, pert_tokens, gene_subset,
                                                              n_measured=self.config.n_measured,
                                                              pad_id=self.config.pad_id)
        out = self.forward(tokens, values, flags, mask)[:, :n_genes]
        return out + values[:, :n_genes] if self.config.residual else out


def build_sequence(x_ctrl: Tensor, pert_tokens: Tensor, gene_subset: Tensor | None, *, n_measured: int,
                   pad_id: int) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Token sequence for a batch: the measured genes of ``gene_subset`` (flagged in place when
    perturbed) followed by one slot per perturbed gene that is not measured (else padding).

    Returns tokens (B, L+2), values, flags, padding mask and L.
    """
    device = x_ctrl.device
    B = x_ctrl.shape[0]
    if gene_subset is None:
        gene_subset = torch.arange(n_measured, device=device)
    L = int(gene_subset.shape[0])
    genes = gene_subset.unsqueeze(0).expand(B, L)
    values = x_ctrl[:, gene_subset]
    perturbed_here = (genes.unsqueeze(-1) == pert_tokens.unsqueeze(1)).any(-1)
    flags = torch.where(perturbed_here, FLAG_ON, FLAG_OFF)
    extra = (pert_tokens >= n_measured)
    slot_tokens = torch.where(extra, pert_tokens, torch.full_like(pert_tokens, pad_id))
    slot_flags = torch.where(extra, FLAG_ON, FLAG_PAD)
    tokens = torch.cat([genes, slot_tokens], dim=1)
    values = torch.cat([values, torch.zeros(B, 2, device=device, dtype=values.dtype)], dim=1)
    flags = torch.cat([flags, slot_flags], dim=1)
    mask = torch.cat([torch.zeros(B, L, dtype=torch.bool, device=device), ~extra], dim=1)
    return tokens, values, flags.long(), mask, L


def sample_gene_subset(pert_tokens: Tensor, n_measured: int, size: int, generator: torch.Generator | None = None) -> Tensor:
    """``size`` random measured-gene ids (sorted) that include every measured perturbed gene of the batch."""
    if size >= n_measured:
        return torch.arange(n_measured, device=pert_tokens.device)
    must = torch.unique(pert_tokens[(pert_tokens >= 0) & (pert_tokens < n_measured)])
    perm = torch.randperm(n_measured, generator=generator).to(pert_tokens.device)
    keep = torch.ones(n_measured, dtype=torch.bool, device=pert_tokens.device)
    keep[must] = False
    rest = perm[keep[perm]][: max(size - len(must), 0)]
    return torch.sort(torch.cat([must, rest]))[0]


def language_table(token_symbols: Sequence[str], embeddings, *, seed: int = 0, missing_scale: float = 0.01,
                   pad: bool = True) -> tuple[np.ndarray, object]:
    """(n_tokens [+1 pad], dim) table of language vectors for ``token_symbols`` from a
    :class:`~scprior.knowledge.embeddings.GeneEmbeddings`, and its match report.

    Genes without an embedding get small random vectors N(0, ``missing_scale``) (scGenePT's
    convention); the padding row is zeros.
    """
    rows, report = embeddings.lookup(list(token_symbols), missing="zero")
    rng = np.random.default_rng(seed)
    missing = np.asarray([s not in report.matched for s in token_symbols])
    rows = rows.copy()
    rows[missing] = rng.normal(0.0, missing_scale, size=(int(missing.sum()), rows.shape[1]))
    if pad:
        rows = np.vstack([rows, np.zeros((1, rows.shape[1]), dtype=rows.dtype)])
    return rows.astype(np.float32), report
