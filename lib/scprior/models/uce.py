"""UCE-style cell encoder: cell sentences of protein-embedding tokens, a transformer, a CLS embedding.

A *cell sentence* samples ``sample_size`` genes with replacement, with probability proportional to
``log1p(count)`` among the cell's expressed genes, groups them by chromosome (chromosome order
shuffled), orders each group by genomic start (from the knowledge gene tables) and lays them out as
``[CLS] [CHR_a] genes... [CHR_END] [CHR_b] genes... [CHR_END] ... [PAD]...`` with a fixed length
(so a cell's embedding never depends on the other cells in its batch). Tokens are rows of a frozen
table: random N(0, 1) vectors for the special and chromosome tokens, protein embeddings for genes.

Unlike the released UCE code:

* sampling is seeded: at inference every cell draws from its own generator seeded by ``seed`` and a
  hash of the cell's own counts, so a cell's embedding depends on nothing else in its file (no
  dataset-level gene filtering either: a gene counts if it has a token);
* padding is masked with a boolean key-padding mask (UCE's float ``1 - mask`` adds +1 to the
  attention logits of padding instead of removing it);
* the masked "is this gene expressed" pretraining (released only as starter code) is implemented:
  a fraction of the expressed genes is hidden from the sentence before it is drawn, and a binary
  decoder on (cell embedding, gene token) must tell the hidden expressed genes from unexpressed
  ones. The unexpressed ones are matched to the positives' gene-detection frequency
  (``negatives="matched"``; UCE draws them uniformly, and then how common a gene is answers the
  task without the cell); :func:`objective_diagnostics` measures whether the decoder reads the cell.

:func:`load_uce_state_dict` maps the released 4-layer checkpoint's key layout (``encoder.*``,
``transformer_encoder.layers.*``, ``decoder.*``, ``binary_decoder.*``, ``gene_embedding_layer.*``,
``pe_embedding.weight``) into :class:`UCEModel`, sinusoidal positions included as the released
forward adds them; :mod:`scprior.models.uce_release` embeds an AnnData with the released files.
"""

from __future__ import annotations

import contextlib
import math
import os
import zlib
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
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.batching import validation_split
from scprior.models.layers import full_block
from scprior.models.species_data import check_species_adatas, stacked_obs
from scprior.models.training import TrainConfig, TrainResult, fit
from scprior.runtime import seed_everything

PAD, CLS, CHROM_END = 0, 1, 2
N_SPECIAL = 3
#: how :func:`cell_sentence` weights a cell's expressed genes: log1p(count) (UCE) or the count
SAMPLE_WEIGHTS = ("log1p", "counts")


# ---------------------------------------------------------------------------------- config
@dataclass
class UCEConfig:
    """Architecture (defaults: the released 4-layer UCE) and pretraining settings."""

    d_model: int = 1280
    nhead: int = 20
    d_hid: int = 5120
    nlayers: int = 4
    output_dim: int = 1280
    dropout: float = 0.05
    #: dropout inside the transformer layers (None: ``dropout``, as UCE). On CPU, dropout in the
    #: attention sends PyTorch down its slow attention path: 0 makes a training step ~1.5x faster
    transformer_dropout: float | None = None
    head_hidden: int = 1024
    decoder_hidden: tuple[int, ...] = (2048, 512, 128)
    positional_encoding: bool = True  # sinusoidal positions, added as the released UCE forward does
    max_len: int = 1536
    sample_size: int = 1024
    #: sentences drawn per cell at embedding time, their cell vectors averaged (UCE: 1). Each
    #: sentence samples only ``sample_size`` of the cell's reads; the mean of K sentences has 1/K
    #: of that sampling variance (see :func:`sentence_stability`)
    embed_sentences: int = 1
    #: training cells (at most) :func:`train_uce` runs :func:`objective_diagnostics` on after
    #: training, and a quarter as many for :func:`sentence_stability` (0: no diagnostics)
    diagnostic_cells: int = 2000
    #: draw probability of an expressed gene: "log1p" ~ log1p(count) as UCE; "counts" ~ count (a
    #: downsampling of the cell's reads). With ~1,600 expressed genes per Baron cell, 64 log1p draws
    #: carry almost no cell type (benchmarks/uce_diagnose.py); count draws carry as much as PCA does
    sample_weights: str = "log1p"
    #: multiply the unit-norm cell vector by sqrt(output_dim) at the decoder input, so it has the
    #: per-feature scale of the LayerNorm'd gene projection beside it (released UCE: no scaling)
    decoder_cell_scale: bool = False
    #: the cell vector read from the transformer output: "cls" (UCE: the CLS position) or "mean"
    #: (mean over the sentence's non-padding positions, CLS included)
    pooling: str = "cls"
    #: which masked genes are queried as positives: "uniform" (any masked expressed gene) or
    #: "counts" (p ~ count). On sparse data most expressed genes are detected by chance, and then
    #: even a decoder given the cell's true PCA coordinates cannot beat a shuffled cell
    #: (benchmarks/uce_diagnose.py --oracle); count-weighted positives are the genes a cell
    #: really expresses
    positive_weights: str = "uniform"
    mask_fraction: float = 0.2
    n_positive: int = 32
    n_negative: int = 32
    #: negatives matched to the positives' gene-detection frequency (bins of equal gene counts), so
    #: "how common is this gene" alone cannot tell them apart; "uniform" = UCE's own draw;
    #: "batch": genes queried as positives in other cells of the batch (same species) that this
    #: cell does not express, so a gene is a positive in one cell and a negative in another and
    #: neither its frequency nor its identity answers without the cell (matched if none)
    negatives: str = "matched"
    frequency_bins: int = 50
    #: the genes sentences and queries use: "all" (every gene with a token, UCE) or "hvg" (only the
    #: highly variable genes the caller passes to :func:`train_uce` as ``genes``; they are stored in
    #: the vocabulary, hence the checkpoint). On sparse data most of a cell's expressed genes are
    #: detected by chance, so queries over all genes carry almost no cell signal
    gene_set: str = "all"
    #: the expression decoder: "mlp" (UCE: an MLP on [cell, gene]) or "dot" (a linear map of the
    #: cell vector dotted with the projected gene token, plus a bias from the gene alone): its only
    #: cell-dependent term is a bilinear one, so it cannot fit the queries while ignoring the cell
    #: more easily than the MLP can
    decoder: str = "mlp"
    #: linear lr warm-up over this many optimizer steps (0 = none, as UCE)
    warmup_steps: int = 0
    grad_clip: float = 1.0
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 32
    val_fraction: float = 0.1
    patience: int = 3
    seed: int = 0
    token_seed: int = 23
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self.decoder_hidden = tuple(int(h) for h in self.decoder_hidden)
        if self.d_model % self.nhead:
            raise ScpriorInputError(f"d_model ({self.d_model}) must be divisible by nhead ({self.nhead}).")
        if int(self.embed_sentences) < 1:
            raise ScpriorInputError(f"embed_sentences must be >= 1, got {self.embed_sentences}.")
        if int(self.diagnostic_cells) < 0:
            raise ScpriorInputError(f"diagnostic_cells must be >= 0 (0: no diagnostics), got {self.diagnostic_cells}.")
        if self.negatives not in ("matched", "uniform", "batch"):
            raise ScpriorInputError(f"negatives must be 'matched', 'uniform' or 'batch', got {self.negatives!r}.")
        if self.positive_weights not in ("uniform", "counts"):
            raise ScpriorInputError(f"positive_weights must be 'uniform' or 'counts', got {self.positive_weights!r}.")
        if self.pooling not in ("cls", "mean"):
            raise ScpriorInputError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}.")
        if self.gene_set not in ("all", "hvg"):
            raise ScpriorInputError(f"gene_set must be 'all' or 'hvg', got {self.gene_set!r}.")
        if self.decoder not in ("mlp", "dot"):
            raise ScpriorInputError(f"decoder must be 'mlp' or 'dot', got {self.decoder!r}.")
        if self.sample_weights not in SAMPLE_WEIGHTS:
            raise ScpriorInputError(f"sample_weights must be one of {SAMPLE_WEIGHTS}, got {self.sample_weights!r}.")


# ------------------------------------------------------------------------------ vocabulary
@dataclass
class GeneVocabulary:
    """The token table and, per species, its genes in genomic order.

    ``tokens`` (n_tokens, token_dim): rows 0-2 PAD/CLS/CHROM_END, then one row per (species,
    chromosome), then gene tokens. ``genes``: DataFrame (species, symbol, token, chrom, start) in
    genomic order within each species (``chrom`` is a code within the species).
    """

    tokens: np.ndarray
    genes: pd.DataFrame
    chrom_tokens: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def species(self) -> list[str]:
        return list(self.chrom_tokens)

    def sentence_length(self, sample_size: int) -> int:
        """1 CLS + ``sample_size`` genes + an open and a close token per chromosome (worst case)."""
        n_chrom = max(len(v) for v in self.chrom_tokens.values())
        return 1 + int(sample_size) + 2 * n_chrom


def _chrom_sort_key(name: str) -> tuple[int, str]:
    s = str(name).upper().removeprefix("CHR")
    return (0, f"{int(s):04d}") if s.isdigit() else (1, s)


def build_vocabulary(protein: Mapping[str, GeneEmbeddings], gene_tables: Mapping[str, pd.DataFrame], *,
                     seed: int = 23) -> GeneVocabulary:
    """Genes with a protein embedding and a genomic position, per species, in (chromosome, start) order.

    ``gene_tables``: species -> table with ``symbol``, ``chromosome`` (``""`` if unplaced) and
    ``start`` (-1 if unknown), as :func:`scprior.knowledge.store.load_gene_table` returns.
    Special and chromosome tokens are N(0, 1) vectors drawn with ``seed`` (as in UCE).
    """
    dims = {e.dim for e in protein.values()}
    if len(dims) != 1:
        raise ScpriorInputError(f"Protein embeddings of all species must share one dimension, got {sorted(dims)}.")
    dim = dims.pop()
    gen = torch.Generator().manual_seed(int(seed))
    rows = [torch.randn(N_SPECIAL, dim, generator=gen).numpy()]
    frames, chrom_tokens = [], {}
    next_token = N_SPECIAL
    keys = {get_species(s).name: s for s in protein}
    for species in protein:
        name = get_species(species).name
        if species not in gene_tables and name not in gene_tables:
            raise ScpriorInputError(f"No chromosome positions for species {name!r}: supply a gene table (symbol, "
                                    "chromosome, start) for it; the cell sentences are ordered by genomic position.")
        table = gene_tables.get(species, gene_tables.get(name))
        for col in ("symbol", "chromosome", "start"):
            if col not in table.columns:
                raise ScpriorInputError(f"Gene table of {name} lacks column {col!r}.")
        placed = table[(table["chromosome"].astype(str) != "") & (table["start"].astype(np.int64) >= 0)]
        placed = placed.drop_duplicates("symbol")
        emb = protein[species]
        has = np.asarray([s in emb for s in placed["symbol"]], dtype=bool)
        placed = placed[has]
        if placed.empty:
            raise ScpriorInputError(f"No {name} gene has both a protein embedding and a genomic position.")
        chroms = sorted(placed["chromosome"].astype(str).unique(), key=_chrom_sort_key)
        code = {c: i for i, c in enumerate(chroms)}
        chrom_tokens[name] = np.arange(next_token, next_token + len(chroms))
        next_token += len(chroms)
        df = pd.DataFrame({"species": name, "symbol": placed["symbol"].astype(str).to_numpy(),
                           "chrom": placed["chromosome"].astype(str).map(code).to_numpy(),
                           "start": placed["start"].astype(np.int64).to_numpy()})
        frames.append(df.sort_values(["chrom", "start", "symbol"], kind="stable").reset_index(drop=True))
    n_chrom_total = next_token - N_SPECIAL
    rows.append(torch.randn(n_chrom_total, dim, generator=gen).numpy())
    for df in frames:
        df["token"] = np.arange(next_token, next_token + len(df))
        next_token += len(df)
        key = keys[df["species"].iloc[0]]
        mat, _ = protein[key].lookup(df["symbol"].tolist(), missing="raise")
        rows.append(mat)
    return GeneVocabulary(tokens=np.vstack(rows).astype(np.float32), genes=pd.concat(frames, ignore_index=True),
                          chrom_tokens=chrom_tokens)


# ---------------------------------------------------------------------------- sentences
def cell_sentence(local: np.ndarray, counts: np.ndarray, gene_tokens: np.ndarray, gene_chrom: np.ndarray,
                  chrom_tokens: np.ndarray, *, sample_size: int, length: int,
                  rng: np.random.Generator, weights: str = "log1p") -> tuple[np.ndarray, int]:
    """One cell sentence (``length`` token ids, PAD-filled) and its number of real tokens.

    ``local``: indices (into the species' genomic-order arrays ``gene_tokens``/``gene_chrom``) of the
    genes to sample from, ``counts`` their counts (> 0). Genes are drawn with replacement with
    p ~ log1p(count) (``weights="counts"``: p ~ count), grouped by chromosome in a random chromosome
    order, sorted by genomic start.
    """
    out = np.full(length, PAD, dtype=np.int64)
    out[0] = CLS
    if len(local) == 0:
        return out, 1
    w = counts.astype(np.float64) if weights == "counts" else np.log1p(counts.astype(np.float64))
    idx = rng.choice(local, size=sample_size, replace=True, p=w / w.sum())
    chrom = gene_chrom[idx]
    perm = rng.permutation(len(chrom_tokens))
    rank = perm[chrom]
    order = np.lexsort((idx, rank))  # by shuffled chromosome rank, then genomic order (= index)
    idx, rank, chrom = idx[order], rank[order], chrom[order]
    new_group = np.concatenate(([True], rank[1:] != rank[:-1]))
    group = np.cumsum(new_group) - 1
    j = np.arange(sample_size)
    out[j + 2 * group + 2] = gene_tokens[idx]
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], sample_size)
    g = np.arange(len(starts))
    out[starts + 2 * g + 1] = chrom_tokens[chrom[starts]]
    out[ends + 2 * g + 2] = CHROM_END
    return out, int(sample_size + 2 * len(starts) + 1)


def cell_seed(seed: int, species: str, local: np.ndarray, counts: np.ndarray) -> int:
    """A seed from ``seed`` and the cell's own content (genes and counts): same cell, same sentence."""
    h = zlib.crc32(species.encode())
    h = zlib.crc32(np.ascontiguousarray(local, dtype=np.int64).tobytes(), h)
    h = zlib.crc32(np.ascontiguousarray(counts, dtype=np.float64).tobytes(), h)
    return int(h) ^ (int(seed) * 2654435761 % 2**32)


class SentenceData(torch.utils.data.Dataset):
    """Cells of several species on their vocabulary genes; collates sentences (and training queries).

    ``mode``: ``"train"`` (generators drawn from torch's RNG, so :func:`fit`'s seed decides them),
    ``"fixed"`` (every cell its own content-seeded generator: validation and inference).
    """

    def __init__(self, vocab: GeneVocabulary, adatas: Mapping[str, ad.AnnData], config: UCEConfig, *,
                 layer: str = "counts", mode: str = "fixed", seed: int = 0, queries: bool = True) -> None:
        self.vocab, self.cfg, self.mode, self.seed, self.queries = vocab, config, mode, int(seed), queries
        self.length = vocab.sentence_length(config.sample_size)
        self.blocks: list[dict] = []
        index = []
        for species, adata in adatas.items():
            name = get_species(species).name
            if name not in vocab.chrom_tokens:
                raise ScpriorInputError(f"The vocabulary has no {name} genes; it covers {vocab.species}.")
            gv = vocab.genes[vocab.genes["species"] == name]
            pos = {s.upper(): i for i, s in enumerate(gv["symbol"])}
            names = [str(v).upper() for v in adata.var_names]
            cols = np.asarray([i for i, n in enumerate(names) if n in pos], dtype=np.int64)
            local = np.asarray([pos[names[i]] for i in cols], dtype=np.int64)
            if len(cols) == 0:
                raise ScpriorInputError(
                    f"None of the {name} data's genes has a protein token; check the symbols and embeddings.")
            mat = adata.layers[layer] if layer else adata.X
            csr = sp.csr_matrix(mat, dtype=np.float32)[:, cols].tocsr()
            csr.sort_indices()
            freq, bins = detection_frequency(csr, local, len(gv), n_bins=config.frequency_bins)
            self.blocks.append({"species": name, "csr": csr, "local": local,
                                "tokens": gv["token"].to_numpy(), "chrom": gv["chrom"].to_numpy(),
                                "chrom_tokens": vocab.chrom_tokens[name], "freq": freq, "bins": bins})
            index += [(len(self.blocks) - 1, r) for r in range(adata.n_obs)]
        self.index = index
        #: detection frequency of every token's gene in its species' data (0 for non-gene tokens)
        self.token_freq = np.zeros(len(vocab.tokens), dtype=np.float64)
        for blk in self.blocks:
            self.token_freq[blk["tokens"][blk["local"]]] = blk["freq"][blk["local"]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> int:
        return i

    def _cell(self, i: int) -> tuple[dict, np.ndarray, np.ndarray]:
        b, r = self.index[i]
        blk = self.blocks[b]
        csr = blk["csr"]
        lo, hi = csr.indptr[r], csr.indptr[r + 1]
        cols, vals = csr.indices[lo:hi], csr.data[lo:hi]
        keep = vals > 0
        return blk, blk["local"][cols[keep]], vals[keep]

    def collate(self, idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
        cfg = self.cfg
        n_q = cfg.n_positive + cfg.n_negative
        tokens = np.empty((len(idx), self.length), dtype=np.int64)
        q_tok = np.zeros((len(idx), n_q), dtype=np.int64)
        q_y = np.zeros((len(idx), n_q), dtype=np.float32)
        q_w = np.zeros((len(idx), n_q), dtype=np.float32)
        later: list[tuple] = []  # negatives="batch": (row, block, expressed, positives, rng), filled below
        for k, i in enumerate(idx):
            blk, local, counts = self._cell(int(i))
            if self.mode == "train":
                rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            else:
                rng = np.random.default_rng(cell_seed(self.seed, blk["species"], local, counts))
            sample_local, sample_counts = local, counts
            if self.queries:
                n_mask = int(round(cfg.mask_fraction * len(local))) if len(local) >= 2 else 0
                masked = rng.choice(len(local), size=n_mask, replace=False) if n_mask else np.empty(0, int)
                keep = np.ones(len(local), dtype=bool)
                keep[masked] = False
                sample_local, sample_counts = local[keep], counts[keep]
                pos = np.empty(0, dtype=np.int64)
                if n_mask:
                    p_pos = None
                    if cfg.positive_weights == "counts":
                        p_pos = counts[masked].astype(np.float64) / counts[masked].sum()
                    pos = rng.choice(local[masked], size=cfg.n_positive, replace=True, p=p_pos)
                    q_tok[k, :cfg.n_positive] = blk["tokens"][pos]
                    q_y[k, :cfg.n_positive] = 1.0
                    q_w[k, :cfg.n_positive] = 1.0
                if cfg.negatives == "batch":
                    later.append((k, self.index[int(i)][0], local, pos, rng))
                if cfg.negatives in ("matched", "batch") and len(pos):
                    want = rng.choice(pos, size=cfg.n_negative, replace=True) if cfg.n_negative != len(pos) else pos
                    neg = matched_negatives(want, blk["local"], local, blk["bins"], rng)
                else:
                    neg = _unexpressed(blk["local"], local, cfg.n_negative, rng)
                if len(neg):
                    q_tok[k, cfg.n_positive:] = blk["tokens"][neg]
                    q_w[k, cfg.n_positive:] = 1.0
            tokens[k], _ = cell_sentence(sample_local, sample_counts, blk["tokens"], blk["chrom"],
                                         blk["chrom_tokens"], sample_size=cfg.sample_size, length=self.length,
                                         rng=rng, weights=cfg.sample_weights)
        for k, b, local, _, rng in later:
            pool = np.concatenate([p for k2, b2, _, p, _ in later if b2 == b and k2 != k] or [np.empty(0, np.int64)])
            pool = pool[~np.isin(pool, local)]
            if len(pool):
                q_tok[k, cfg.n_positive:] = self.blocks[b]["tokens"][rng.choice(pool, size=cfg.n_negative)]
                q_w[k, cfg.n_positive:] = 1.0
        out = (torch.as_tensor(tokens),)
        if self.queries:
            out += (torch.as_tensor(q_tok), torch.as_tensor(q_y), torch.as_tensor(q_w))
        return out


def detection_frequency(csr: sp.csr_matrix, local: np.ndarray, n_genes: int, *,
                        n_bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Per vocabulary gene of one species (``n_genes``): the fraction of cells in ``csr`` (cells x
    measured genes, columns = vocabulary indices ``local``) that express it, and its frequency bin
    (``n_bins`` bins with equal numbers of measured genes, by frequency rank; -1 if unmeasured)."""
    freq = np.zeros(n_genes, dtype=np.float64)
    bins = np.full(n_genes, -1, dtype=np.int64)
    if csr.shape[0] == 0 or len(local) == 0:
        return freq, bins
    expressed = np.bincount(csr.indices[csr.data > 0], minlength=csr.shape[1])
    freq[local] = expressed / csr.shape[0]
    rank = np.argsort(np.argsort(freq[local], kind="stable"), kind="stable")
    bins[local] = rank * int(n_bins) // len(local)
    return freq, bins


def matched_negatives(positives: np.ndarray, measured: np.ndarray, expressed: np.ndarray, bins: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """One unexpressed gene per positive, from the positive's detection-frequency bin (the nearest
    bin that has an unexpressed gene if that one has none). All arguments are vocabulary indices of
    one species; ``bins`` from :func:`detection_frequency`. Empty if the cell expresses every gene."""
    seen = np.zeros(len(bins), dtype=bool)  # a mask: np.isin costs most of this function
    seen[expressed] = True
    unexp = measured[~seen[measured]]
    if len(unexp) == 0 or len(positives) == 0:
        return np.empty(0, dtype=np.int64)
    ub = bins[unexp]
    order = np.argsort(ub, kind="stable")
    unexp, ub = unexp[order], ub[order]
    n_bins = int(max(bins.max(), ub.max())) + 1
    counts = np.bincount(ub, minlength=n_bins)
    starts = np.cumsum(counts) - counts
    nonempty = np.flatnonzero(counts)
    pb = bins[positives]
    j = np.clip(np.searchsorted(nonempty, pb), 0, len(nonempty) - 1)
    lower = nonempty[np.maximum(j - 1, 0)]
    upper = nonempty[j]
    b = np.where(np.abs(upper - pb) <= np.abs(pb - lower), upper, lower)
    pick = starts[b] + np.floor(rng.random(len(b)) * counts[b]).astype(np.int64)
    return unexp[pick]


def _unexpressed(measured: np.ndarray, expressed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws (with replacement) from the measured genes not expressed in the cell (empty if none)."""
    cand = rng.choice(measured, size=4 * n, replace=True)
    cand = cand[~np.isin(cand, expressed)]
    if len(cand) >= n:
        return cand[:n]
    rest = np.setdiff1d(measured, expressed)
    return rng.choice(rest, size=n, replace=True) if len(rest) else rest


def sentence_loader(data: SentenceData, indices: Sequence[int] | None = None, *, batch_size: int,
                    shuffle: bool = False, seed: int = 0) -> torch.utils.data.DataLoader:
    """DataLoader over ``data`` (optionally a subset of cells), collating sentences in the main process."""
    ds = data if indices is None else torch.utils.data.Subset(data, list(map(int, indices)))
    gen = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                       generator=gen if shuffle else None, collate_fn=data.collate)


# --------------------------------------------------------------------------------- model
def _sinusoid(max_len: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d_model // 2]
    return pe


@contextlib.contextmanager
def _mha_fastpath(enabled: bool):
    """PyTorch's fused transformer inference path on or off inside the block (a global switch)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


class UCEModel(nn.Module):
    """Token table -> Linear+GELU+LayerNorm (x sqrt(d_model)) [+ positions] -> transformer -> CLS head.

    ``forward(tokens)`` (B, L) long ids -> L2-normalised cell embeddings (B, output_dim).
    ``expression_logits(cell, gene_tokens)`` scores "is this gene expressed" (B, Q).
    """

    def __init__(self, tokens: np.ndarray | torch.Tensor, config: UCEConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        table = torch.as_tensor(np.asarray(tokens, dtype=np.float32))
        self.register_buffer("token_table", table)
        token_dim = table.shape[1]
        self.token_proj = nn.Sequential(nn.Linear(token_dim, c.d_model), nn.GELU(), nn.LayerNorm(c.d_model))
        t_drop = c.dropout if c.transformer_dropout is None else c.transformer_dropout
        layer = nn.TransformerEncoderLayer(c.d_model, c.nhead, c.d_hid, t_drop, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.nlayers, enable_nested_tensor=False)
        self.cell_head = nn.Sequential(full_block(c.d_model, c.head_hidden, dropout=c.dropout, activation="gelu"),
                                       full_block(c.head_hidden, c.output_dim, dropout=c.dropout, activation="gelu"),
                                       full_block(c.output_dim, c.output_dim, dropout=c.dropout, activation="gelu"),
                                       nn.Linear(c.output_dim, c.output_dim))
        self.gene_proj = nn.Sequential(nn.Linear(token_dim, c.d_model), nn.GELU(), nn.LayerNorm(c.d_model))
        if c.decoder == "dot":  # logit = <W cell, gene> / sqrt(d_model) + b(gene)
            self.expression_decoder = nn.Linear(c.output_dim, c.d_model, bias=False)
            self.gene_bias = nn.Linear(c.d_model, 1)
        else:
            dims = [c.output_dim + c.d_model, *c.decoder_hidden]
            self.expression_decoder = nn.Sequential(
                *[full_block(a, b, dropout=c.dropout, activation="gelu") for a, b in zip(dims[:-1], dims[1:])],
                nn.Linear(dims[-1], 1))
        self.register_buffer("positions", _sinusoid(c.max_len, c.d_model), persistent=False)

    def tokens_in(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids -> normalised token vectors -> model space (B, L, d_model)."""
        x = F.normalize(self.token_table[tokens], dim=-1)
        h = self.token_proj(x) * math.sqrt(self.config.d_model)
        if self.config.positional_encoding:
            if tokens.shape[1] > self.positions.shape[0]:
                raise ScpriorInputError(f"Sentence length {tokens.shape[1]} exceeds max_len {self.positions.shape[0]}.")
            h = h + self.positions[: tokens.shape[1]]
        return h

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == PAD
        if self.training:
            h = self.transformer(self.tokens_in(tokens), src_key_padding_mask=pad)
        else:  # the fused inference path is slower than the plain one at these sizes on CPU (benchmarks/uce_inference_path.py)
            with _mha_fastpath(False):
                h = self.transformer(self.tokens_in(tokens), src_key_padding_mask=pad)
        if self.config.pooling == "mean":
            keep = (~pad).unsqueeze(-1).to(h.dtype)
            pooled = (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        else:
            pooled = h[:, 0]
        return F.normalize(self.cell_head(pooled), dim=1)

    def expression_logits(self, cell: torch.Tensor, gene_tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, Q) that each queried gene (token ids, B x Q) is expressed in each cell (B x out)."""
        g = self.gene_proj(self.token_table[gene_tokens])
        if self.config.decoder_cell_scale:
            cell = cell * math.sqrt(cell.shape[1])
        if self.config.decoder == "dot":
            w = self.expression_decoder(cell)[:, None, :]  # (B, 1, d_model)
            return (w * g).sum(-1) / math.sqrt(g.shape[-1]) + self.gene_bias(g).squeeze(-1)
        c = cell[:, None, :].expand(-1, gene_tokens.shape[1], -1)
        return self.expression_decoder(torch.cat([c, g], dim=-1)).squeeze(-1)


def masked_expression_loss(model: UCEModel, batch, epoch: int) -> dict[str, torch.Tensor]:
    """Binary cross-entropy of "is this held-out gene expressed" (weights mask absent queries)."""
    tokens, q_tok, q_y, q_w = batch
    cell = model(tokens)
    logits = model.expression_logits(cell, q_tok)
    bce = F.binary_cross_entropy_with_logits(logits, q_y, weight=q_w, reduction="sum") / q_w.sum().clamp_min(1.0)
    with torch.no_grad():
        acc = (((logits > 0).float() == q_y).float() * q_w).sum() / q_w.sum().clamp_min(1.0)
    return {"loss": bce, "accuracy": acc}


@torch.no_grad()
def objective_diagnostics(model: UCEModel, data: SentenceData, indices: Sequence[int], *, batch_size: int = 64,
                          seed: int = 0) -> dict[str, float]:
    """Can the pretraining objective be solved without reading the cell? On the queries of the
    cells ``indices`` (sentences and queries drawn as in training, seeded):

    * ``cell_blind_auroc``: AUROC of the gene's detection frequency alone as the score for
      "expressed" (0.5 = the negatives are matched; UCE's uniform negatives give ~0.9 on Baron);
    * ``decoder_accuracy`` / ``decoder_accuracy_shuffled``: the decoder's accuracy with each cell's
      own embedding and with the embedding of another cell of the batch (rolled by one); their
      difference ``decoder_gap`` > 0 means the decoder reads the cell;
    * ``decoder_auroc`` / ``decoder_auroc_shuffled``: the same as AUROCs.
    """
    from sklearn.metrics import accuracy_score, roc_auc_score

    was = model.training
    model.eval()
    device = next(model.parameters()).device
    fixed = SentenceData.__new__(SentenceData)
    fixed.__dict__.update(data.__dict__)
    fixed.mode, fixed.seed, fixed.queries = "fixed", int(seed), True
    ys, ws, freq, real, shuf = [], [], [], [], []
    for tokens, q_tok, q_y, q_w in sentence_loader(fixed, indices, batch_size=batch_size):
        cell = model(tokens.to(device))
        q = q_tok.to(device)
        real.append(model.expression_logits(cell, q).cpu().numpy().ravel())
        shuf.append(model.expression_logits(torch.roll(cell, 1, dims=0), q).cpu().numpy().ravel())
        ys.append(q_y.numpy().ravel())
        ws.append(q_w.numpy().ravel())
        freq.append(data.token_freq[q_tok.numpy()].ravel())
    model.train(was)
    y, w = np.concatenate(ys), np.concatenate(ws) > 0
    y, f, r, s_ = y[w], np.concatenate(freq)[w], np.concatenate(real)[w], np.concatenate(shuf)[w]
    if len(np.unique(y)) < 2:
        raise ScpriorInputError("The queries hold one class only; objective diagnostics need expressed and "
                                "unexpressed genes.")
    acc, acc_s = accuracy_score(y, r > 0), accuracy_score(y, s_ > 0)
    return {"cell_blind_auroc": float(roc_auc_score(y, f)), "decoder_accuracy": float(acc),
            "decoder_accuracy_shuffled": float(acc_s), "decoder_gap": float(acc - acc_s),
            "decoder_auroc": float(roc_auc_score(y, r)), "decoder_auroc_shuffled": float(roc_auc_score(y, s_)),
            "n_queries": int(len(y))}


def mean_pairwise_cosine(z: np.ndarray) -> float:
    """Mean cosine similarity over all pairs of distinct rows of ``z`` (1.0 = a collapsed embedding)."""
    z = np.asarray(z, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    n = len(z)
    if n < 2:
        raise ScpriorInputError("Mean pairwise cosine needs at least two cells.")
    total = z.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


# --------------------------------------------------------------------------- AnnData API
@dataclass
class UCEResult:
    """What :func:`train_uce` returns: the combined AnnData (``obsm[key]``), model, vocabulary, history."""

    adata: ad.AnnData
    model: UCEModel
    vocab: GeneVocabulary
    train: TrainResult | None
    #: :func:`objective_diagnostics` on the training cells and the held-out cells, and the mean
    #: pairwise cosine of the embedding
    diagnostics: dict = field(default_factory=dict)


@torch.no_grad()
def embed_cells(model: UCEModel, vocab: GeneVocabulary, adatas: Mapping[str, ad.AnnData], *,
                layer: str = "counts", seed: int = 0, batch_size: int = 64, progress: bool = False,
                sentences: int | None = None) -> np.ndarray:
    """Embed the cells of ``adatas`` (species -> AnnData of counts), concatenated in that order.

    Each cell's sentence comes from its own generator (``seed`` + a hash of its counts), and
    sentences have a fixed length: a cell's embedding is the same alone or among any other cells.
    ``sentences`` (default ``model.config.embed_sentences``): K sentences per cell, drawn with the
    seeds ``sentence_seeds(seed, K)``; their unit cell vectors are averaged and renormalised.
    Returns (n_cells, output_dim), rows L2-normalised.
    """
    check_species_adatas(adatas, layer=layer)
    k = int(model.config.embed_sentences if sentences is None else sentences)
    if k < 1:
        raise ScpriorInputError(f"sentences must be >= 1, got {k}.")
    device = next(model.parameters()).device
    model.eval()
    total = None
    for s in sentence_seeds(seed, k):
        data = SentenceData(vocab, adatas, model.config, layer=layer, mode="fixed", seed=s, queries=False)
        it = sentence_loader(data, batch_size=batch_size)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"uce embed (seed {s})", leave=False)
        z = np.concatenate([model(b[0].to(device)).cpu().numpy() for b in it], axis=0)
        total = z if total is None else total + z
    if k == 1:
        return total
    return total / np.clip(np.linalg.norm(total, axis=1, keepdims=True), 1e-12, None)


def sentence_seeds(seed: int, k: int) -> list[int]:
    """The sentence seeds :func:`embed_cells` uses for ``k`` sentences per cell (the first is ``seed``)."""
    return [int(seed) + 100_003 * i for i in range(int(k))]


def sentence_stability(model: UCEModel, vocab: GeneVocabulary, adatas: Mapping[str, ad.AnnData], *,
                       layer: str = "counts", seed: int = 0, sentences: int | None = None,
                       batch_size: int = 64) -> float:
    """Label-free: mean cosine between each cell's embedding from two disjoint sets of ``sentences``
    sentences (seeds ``seed`` and ``seed + 1``), i.e. how little the sentence draw moves a cell.
    1.0: the draw does not matter."""
    k = int(model.config.embed_sentences if sentences is None else sentences)
    a = embed_cells(model, vocab, adatas, layer=layer, seed=seed, sentences=k, batch_size=batch_size)
    b = embed_cells(model, vocab, adatas, layer=layer, seed=seed + 1, sentences=k, batch_size=batch_size)
    return float(np.mean(np.sum(a * b, axis=1)))


def train_uce(
    adatas: Mapping[str, ad.AnnData],
    protein: Mapping[str, GeneEmbeddings],
    gene_tables: Mapping[str, pd.DataFrame],
    *,
    config: UCEConfig | None = None,
    layer: str = "counts",
    key: str = "X_uce",
    checkpoint: str | os.PathLike | None = None,
    diagnostics: int | None = None,
    genes: Mapping[str, Sequence[str]] | None = None,
) -> UCEResult:
    """Pretrain a UCE-style encoder (masked expression) on ``adatas`` and embed their cells.

    ``protein``: species -> protein :class:`GeneEmbeddings` (tokens); ``gene_tables``: species ->
    knowledge gene table (chromosome, start). The best epoch is chosen on the masked-expression
    loss of held-out cells (whose sentences and queries are fixed by their own seeds); training
    stops when it has not improved for ``config.patience`` epochs. ``diagnostics`` (default
    ``config.diagnostic_cells``): training cells (at most) on which :func:`objective_diagnostics`
    runs (0: none; a quarter as many cells, for :func:`sentence_stability` with 1 and
    ``config.embed_sentences`` sentences). Returns the cells of all
    species concatenated with the embedding in ``obsm[key]``, and the diagnostics. ``genes``:
    species -> symbols (e.g. the task's HVGs) the vocabulary is restricted to; required when
    ``config.gene_set == "hvg"``, stored with the model as its vocabulary.
    """
    cfg = config or UCEConfig()
    check_species_adatas(adatas, layer=layer)
    seed_everything(cfg.seed)
    if cfg.gene_set == "hvg" and genes is None:
        raise ScpriorInputError("gene_set='hvg' needs genes= (species -> highly variable gene symbols).")
    if genes is not None:
        gene_tables = restricted_tables(gene_tables, genes)
    vocab = build_vocabulary(protein, gene_tables, seed=cfg.token_seed)
    model = UCEModel(vocab.tokens, cfg)
    train_data = SentenceData(vocab, adatas, cfg, layer=layer, mode="train", seed=cfg.seed)
    val_data = SentenceData(vocab, adatas, cfg, layer=layer, mode="fixed", seed=cfg.seed)
    strata = [b for b, _ in train_data.index]
    tr, va = validation_split(len(train_data), fraction=cfg.val_fraction, seed=cfg.seed, strata=strata)
    extra = {"config": asdict(cfg), "vocab_genes": vocab.genes.to_dict(orient="list"),
             "chrom_tokens": {k: v.tolist() for k, v in vocab.chrom_tokens.items()}}
    result = None
    if cfg.epochs > 0:
        tcfg = TrainConfig(max_epochs=cfg.epochs, lr=cfg.lr, optimizer="adamw", patience=cfg.patience,
                           seed=cfg.seed, device=cfg.device, progress=cfg.progress, desc="uce pretrain",
                           grad_clip=cfg.grad_clip or None, warmup_steps=cfg.warmup_steps)
        result = fit(model, masked_expression_loss,
                     sentence_loader(train_data, tr, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed),
                     sentence_loader(val_data, va, batch_size=cfg.batch_size) if len(va) else None,
                     tcfg, checkpoint=checkpoint, extra_state=extra)
    z = embed_cells(model, vocab, adatas, layer=layer, seed=cfg.seed, batch_size=max(cfg.batch_size, 64),
                    progress=cfg.progress)
    out = ad.AnnData(obs=stacked_obs(adatas))
    out.obsm[key] = z.astype(np.float32)
    diag = {"mean_pairwise_cosine": mean_pairwise_cosine(z)}
    diagnostics = cfg.diagnostic_cells if diagnostics is None else diagnostics
    if diagnostics:
        few = cell_subset(adatas, max(2, int(diagnostics) // 4), seed=cfg.seed)
        diag["sentence_stability"] = {
            str(k): sentence_stability(model, vocab, few, layer=layer, seed=cfg.seed, sentences=k,
                                       batch_size=max(cfg.batch_size, 64))
            for k in sorted({1, int(cfg.embed_sentences)})}
    if diagnostics:
        n = min(len(tr), int(diagnostics))
        sub = np.sort(np.random.default_rng(cfg.seed).choice(tr, size=n, replace=False))
        diag["train"] = objective_diagnostics(model, train_data, sub, batch_size=max(cfg.batch_size, 64),
                                              seed=cfg.seed)
        if len(va):
            diag["val"] = objective_diagnostics(model, val_data, va, batch_size=max(cfg.batch_size, 64),
                                                seed=cfg.seed + 1)
    return UCEResult(adata=out, model=model, vocab=vocab, train=result, diagnostics=diag)


def cell_subset(adatas: Mapping[str, ad.AnnData], n: int, *, seed: int = 0) -> dict[str, ad.AnnData]:
    """At most ``n`` cells in all, drawn (seeded) in proportion to each species' cells; copies."""
    total = sum(a.n_obs for a in adatas.values())
    rng = np.random.default_rng(seed)
    out = {}
    for s, a in adatas.items():
        m = min(a.n_obs, max(1, round(n * a.n_obs / max(total, 1))))
        out[s] = a[np.sort(rng.choice(a.n_obs, size=m, replace=False))].copy()
    return out


def restricted_tables(gene_tables: Mapping[str, pd.DataFrame],
                      genes: Mapping[str, Sequence[str]]) -> dict[str, pd.DataFrame]:
    """``gene_tables`` with each species' rows limited to ``genes[species]`` (symbols, any case)."""
    names = {get_species(s).name: s for s in genes}
    out = {}
    for species, table in gene_tables.items():
        key = names.get(get_species(species).name) if species not in genes else species
        if key is None:
            out[species] = table
            continue
        keep = {str(g).upper() for g in genes[key]}
        out[species] = table[table["symbol"].astype(str).str.upper().isin(keep)]
    return out


def load_uce(path: str | os.PathLike, tokens: np.ndarray) -> tuple[UCEModel, GeneVocabulary]:
    """Rebuild a model trained by :func:`train_uce` from its checkpoint (``tokens``: the vocabulary's table)."""
    from scprior.models.training import load_checkpoint  # tensors + plain data only (weights_only)

    state = load_checkpoint(Path(path), what="UCE checkpoint")
    try:
        cfg = UCEConfig(**state["config"])
    except (KeyError, TypeError) as exc:
        raise ScpriorInputError(f"{path} is not a UCE checkpoint ({exc}); pass the file its training wrote.") from None
    model = UCEModel(tokens, cfg)
    model.load_state_dict(state["model_state"])
    vocab = GeneVocabulary(tokens=np.asarray(tokens), genes=pd.DataFrame(state["vocab_genes"]),
                           chrom_tokens={k: np.asarray(v) for k, v in state["chrom_tokens"].items()})
    return model.eval(), vocab


# ----------------------------------------------------------------- released UCE weights
#: released key prefix -> our module prefix
UCE_KEY_MAP: dict[str, str] = {
    "encoder.": "token_proj.",
    "transformer_encoder.": "transformer.",
    "decoder.": "cell_head.",
    "binary_decoder.": "expression_decoder.",
    "gene_embedding_layer.": "gene_proj.",
}
#: released key of UCE's sinusoidal position buffer (max_len, 1, d_model): its forward adds it
#: (``src = self.pos_encoder(src)``); the loader copies it into :attr:`UCEModel.positions`
UCE_POSITIONS = "pos_encoder.pe"


def uce_config_from_state_dict(state: Mapping[str, torch.Tensor], **overrides) -> UCEConfig:
    """Infer the architecture of a released UCE state dict (layers, widths, ``max_len`` from the
    position buffer); sinusoidal positions on, as the released forward adds them."""
    try:
        d_model, token_dim = state["encoder.0.weight"].shape
        d_hid = state["transformer_encoder.layers.0.linear1.weight"].shape[0]
        head_hidden = state["decoder.0.0.weight"].shape[0]
        output_dim = state["decoder.3.weight"].shape[0]
    except KeyError as err:
        raise ScpriorInputError(f"Not a UCE state dict: key {err} missing (expected the released model.py layout).") from err
    nlayers = len({k.split(".")[2] for k in state if k.startswith("transformer_encoder.layers.")})
    dec = sorted({int(k.split(".")[1]) for k in state if k.startswith("binary_decoder.")})
    hidden = tuple(state[f"binary_decoder.{i}.0.weight"].shape[0] for i in dec[:-1])
    cfg = {"d_model": int(d_model), "d_hid": int(d_hid), "nlayers": nlayers, "output_dim": int(output_dim),
           "head_hidden": int(head_hidden), "decoder_hidden": hidden, "positional_encoding": True,
           "nhead": 20 if d_model % 20 == 0 else 1}
    if UCE_POSITIONS in state:
        cfg["max_len"] = int(state[UCE_POSITIONS].shape[0])
    cfg.update(overrides)
    return UCEConfig(**cfg)


def load_uce_state_dict(
    state: Mapping[str, torch.Tensor],
    *,
    tokens: np.ndarray | None = None,
    token_rows: np.ndarray | None = None,
    config: UCEConfig | None = None,
) -> UCEModel:
    """Build a :class:`UCEModel` from a released UCE state dict (``torch.load('4layer_model.torch')``).

    Weights are renamed by :data:`UCE_KEY_MAP`; every key must be used (``pos_encoder.pe`` becomes
    the positions the forward adds after ``encoder`` x sqrt(d_model), as in UCE's ``model.py``;
    ``pe_embedding.weight`` is the protein token table). The token table of our model is
    ``tokens`` if given, else the rows ``token_rows`` of ``pe_embedding.weight`` (our token id ->
    UCE row), else the whole ``pe_embedding.weight``. ``nhead`` is not stored in a state dict: 20
    as released unless ``config`` says otherwise.
    """
    state = dict(state)
    cfg = config or uce_config_from_state_dict(state)
    table = None
    if "pe_embedding.weight" in state:
        pe = state.pop("pe_embedding.weight")
        table = pe if token_rows is None else pe[torch.as_tensor(np.asarray(token_rows, dtype=np.int64))]
    if tokens is not None:
        table = torch.as_tensor(np.asarray(tokens, dtype=np.float32))
    if table is None:
        raise ScpriorInputError("No token table: pass tokens= (e.g. vocabulary.tokens) or a state dict with pe_embedding.weight.")
    token_dim = state["encoder.0.weight"].shape[1]
    if table.shape[1] != token_dim:
        raise ScpriorInputError(f"Token vectors have {table.shape[1]} dims but the checkpoint expects {token_dim}.")
    model = UCEModel(table.float(), cfg)
    mapped, unused = {}, []
    positions = state.pop(UCE_POSITIONS, None)
    for k, v in state.items():
        prefix = next((p for p in UCE_KEY_MAP if k.startswith(p)), None)
        if prefix is None:
            unused.append(k)
            continue
        mapped[UCE_KEY_MAP[prefix] + k[len(prefix):]] = v
    if unused:
        raise ScpriorInputError(f"UCE state dict has keys this loader does not know: {unused[:5]}.")
    own = {k for k in model.state_dict() if k != "token_table"}
    missing = sorted(own - set(mapped))
    extra = sorted(set(mapped) - own)
    if missing or extra:
        raise ScpriorInputError(
            f"UCE state dict does not fit the model: missing {missing[:5]}, unexpected {extra[:5]} "
            "(a different number of layers or a different model.py?).")
    for k, v in mapped.items():
        if model.state_dict()[k].shape != v.shape:
            raise ScpriorInputError(f"Shape of {k}: checkpoint {tuple(v.shape)} vs model {tuple(model.state_dict()[k].shape)}.")
    model.load_state_dict({**mapped, "token_table": model.token_table}, strict=True)
    if positions is not None:
        pe = torch.as_tensor(positions, dtype=torch.float32)
        pe = pe[:, 0, :] if pe.ndim == 3 else pe
        if pe.ndim != 2 or pe.shape[1] != cfg.d_model:
            raise ScpriorInputError(f"{UCE_POSITIONS} has shape {tuple(positions.shape)}; expected (max_len, 1, {cfg.d_model}).")
        model.positions = pe.clone()
    return model.eval()
