"""In-silico TF deletion (GeneCompass ``perturb_delete_chipseq.py``, from Geneformer's perturber).

For every cell whose rank encoding holds the TF's token: remove that token (the genes ranked after
it move up one place, the values travel with their genes), recompute the last-layer contextual
embeddings of the other genes, and score each gene by its **cosine shift** ``1 - cos(before,
after)``. Shifts are averaged per gene over the cells of each cell type and over all cells
(``group == "all"``); genes never in a cell with the TF get no score (0 in the score matrix).

The encoder is anything with :class:`ContextualGeneEncoder`'s method: a batch of rank-encoded cells
(gene token ids with :data:`PAD` after the last gene, values, species ids, padding mask) ->
last-layer gene embeddings ``(cells, L, d)`` aligned with the input positions.

Cost grows with TFs x cells x sequence length: ``max_cells`` bounds the cells per TF. With
``out_dir`` every finished TF is written atomically to ``out_dir/<TF>.parquet`` beside a
``settings.json``; a killed run started again with the same settings skips the TFs already done.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from scprior.errors import ScpriorInputError
from scprior.safe_io import atomic_path, check_writable, write_text_atomic

PAD = 0
ALL = "all"


class ContextualGeneEncoder(Protocol):
    """What deletion needs from a model."""

    def gene_embeddings(self, input_ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor,
                        padding_mask: torch.Tensor) -> torch.Tensor:
        """``input_ids`` (B, L) int64, ``values`` (B, L) float32, ``species`` (B,) int64,
        ``padding_mask`` (B, L) bool (True at padding) -> last-layer gene embeddings (B, L, d)."""
        ...


@dataclass(frozen=True)
class DeletionSettings:
    """Cells per TF (``max_cells``, drawn with ``seed``), forward batch size and device."""

    max_cells: int = 200
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"


def delete_token(input_ids: np.ndarray, values: np.ndarray, token: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove ``token`` from each row (rows must contain it once): shifted ids, values, its positions."""
    hit = input_ids == token
    if not hit.any(axis=1).all():
        raise ValueError("every row must contain the token to delete")
    pos = hit.argmax(axis=1)
    n, width = input_ids.shape
    cols = np.arange(width)[None, :]
    src = cols + (cols >= pos[:, None])  # position j of the new row reads j (before pos) or j + 1
    src = np.minimum(src, width - 1)
    ids = np.take_along_axis(input_ids, src, axis=1)
    vals = np.take_along_axis(values, src, axis=1)
    ids[:, -1], vals[:, -1] = PAD, 0.0
    return ids, vals, pos


def _embed(encoder, ids: np.ndarray, vals: np.ndarray, species: np.ndarray, device: str) -> torch.Tensor:
    t_ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    out = encoder.gene_embeddings(t_ids, torch.as_tensor(vals, dtype=torch.float32, device=device),
                                  torch.as_tensor(species, dtype=torch.long, device=device), t_ids == PAD)
    if out.shape[:2] != t_ids.shape:
        raise ScpriorInputError(f"The encoder returned {tuple(out.shape)} for input {tuple(t_ids.shape)}; "
                                "it must give one embedding per input position (cells, L, d).")
    return out.float()


@torch.no_grad()
def cosine_shifts(encoder, input_ids: np.ndarray, values: np.ndarray, species: np.ndarray, token: int,
                  device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """For cells that all contain ``token``: per cell and original position, ``1 - cos`` of the gene's
    embedding before/after deleting it, and a mask of the positions scored (other genes, not padding)."""
    base = _embed(encoder, input_ids, values, species, device)
    ids_del, vals_del, pos = delete_token(input_ids, values, token)
    after = _embed(encoder, ids_del, vals_del, species, device)
    width = input_ids.shape[1]
    cols = np.arange(width)[None, :]
    dst = np.clip(cols - (cols > pos[:, None]), 0, width - 1)  # where original position j went
    idx = torch.as_tensor(dst, dtype=torch.long, device=after.device)
    aligned = torch.gather(after, 1, idx[..., None].expand(-1, -1, after.shape[-1]))
    cos = torch.nn.functional.cosine_similarity(base, aligned, dim=-1, eps=1e-8)
    scored = (input_ids != PAD) & (cols != pos[:, None])
    return (1.0 - cos).cpu().numpy(), scored


def _safe_name(tf: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tf)


def _tf_result(encoder, enc_ids, enc_vals, enc_species, groups, token: int, tf: str,
               id_to_gene: Sequence[str], settings: DeletionSettings) -> pd.DataFrame:
    cells = np.flatnonzero((enc_ids == token).any(axis=1))
    if len(cells) > settings.max_cells:
        rng = np.random.default_rng([settings.seed, token])
        cells = np.sort(rng.choice(cells, size=settings.max_cells, replace=False))
    names = [ALL, *sorted(set(groups[cells].tolist()))]
    code = {g: i for i, g in enumerate(names)}
    vocab = len(id_to_gene)
    sums = np.zeros(len(names) * vocab)
    counts = np.zeros(len(names) * vocab, dtype=np.int64)
    for start in range(0, len(cells), settings.batch_size):
        b = cells[start:start + settings.batch_size]
        shift, scored = cosine_shifts(encoder, enc_ids[b], enc_vals[b], enc_species[b], token, settings.device)
        rows, cols = np.nonzero(scored)
        genes, vals = enc_ids[b][rows, cols], shift[rows, cols].astype(np.float64)
        own = np.array([code[g] for g in groups[b]])[rows]
        for grp in (np.zeros_like(own), own):
            key = grp * vocab + genes
            np.add.at(sums, key, vals)
            np.add.at(counts, key, 1)
    hit = np.flatnonzero(counts)
    return pd.DataFrame({"tf": tf, "group": [names[k // vocab] for k in hit],
                         "gene": [id_to_gene[k % vocab] for k in hit],
                         "shift": sums[hit] / counts[hit], "n_cells": counts[hit]})


def run_deletion(encoder, input_ids: np.ndarray, values: np.ndarray, species: np.ndarray,
                 cell_groups: Sequence[str], tfs: Sequence[str], gene_to_id: Mapping[str, int], *,
                 settings: DeletionSettings | None = None, out_dir: str | os.PathLike | None = None,
                 fingerprint: str = "", progress: bool = True) -> pd.DataFrame:
    """Delete each TF in turn; return ``tf``, ``group`` (cell type or ``"all"``), ``gene``, ``shift``
    (mean 1 - cosine), ``n_cells``. TFs absent from every cell give no rows.

    ``input_ids`` / ``values`` (cells, L) and ``species`` (cells,) are the rank encoding;
    ``cell_groups`` (cells,) the cell type of each cell. ``out_dir``: resumable per-TF results;
    ``fingerprint`` names the model (e.g. :func:`model_fingerprint`) so results of another model
    in the same folder are never reused.
    """
    settings = settings or DeletionSettings()
    input_ids, values = np.asarray(input_ids, dtype=np.int64), np.asarray(values, dtype=np.float32)
    species = np.asarray(species, dtype=np.int64)
    groups = np.asarray(cell_groups, dtype=str)
    if not (len(input_ids) == len(values) == len(species) == len(groups)):
        raise ScpriorInputError("input_ids, values, species and cell_groups must have one row per cell.")
    unknown = [t for t in tfs if t not in gene_to_id]
    if unknown:
        raise ScpriorInputError(f"TFs {unknown[:5]} have no token in the model's vocabulary.")
    id_to_gene = np.empty(max(gene_to_id.values()) + 1, dtype=object)
    for g, i in gene_to_id.items():
        id_to_gene[i] = g
    folder = None
    if out_dir is not None:
        folder = check_writable(out_dir)
        stamp = {**asdict(settings), "n_cells": int(len(input_ids)), "width": int(input_ids.shape[1]),
                 "encoding_checksum": int(np.int64(input_ids.sum() % 1_000_000_007)), "model": fingerprint}
        stamp.pop("device")
        stamp.pop("batch_size")
        meta = folder / "settings.json"
        if meta.is_file() and json.loads(meta.read_text()) != stamp:
            raise ScpriorInputError(f"{folder} holds deletion results made with other settings "
                                    f"({meta.read_text().strip()}); empty the folder or choose another.")
        write_text_atomic(meta, json.dumps(stamp, sort_keys=True))
    eval_ = getattr(encoder, "eval", None)
    if callable(eval_):
        eval_()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **_):
            return x
    parts = []
    for tf in tqdm(list(tfs), desc="in-silico deletion", unit="TF", disable=not progress):
        path = folder / f"{_safe_name(tf)}.parquet" if folder is not None else None
        if path is not None and path.is_file():
            parts.append(pd.read_parquet(path))
            continue
        part = _tf_result(encoder, input_ids, values, species, groups, int(gene_to_id[tf]), tf, id_to_gene, settings)
        if path is not None:
            with atomic_path(path) as tmp:
                part.to_parquet(tmp, index=False)
        parts.append(part)
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["tf", "group", "gene", "shift", "n_cells"])
    return pd.concat(parts, ignore_index=True)


def model_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers (identifies the exact weights)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def deletion_matrix(result: pd.DataFrame, tfs: Sequence[str], genes: Sequence[str], group: str = ALL) -> pd.DataFrame:
    """TFs x genes mean shift of one group (``"all"`` or a cell type); 0 where never measured."""
    sub = result[result["group"] == group]
    piv = sub.pivot_table(index="tf", columns="gene", values="shift", aggfunc="mean")
    return piv.reindex(index=list(tfs), columns=list(genes)).fillna(0.0)
