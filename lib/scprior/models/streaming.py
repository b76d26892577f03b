"""Embedding atlases bigger than memory, chunk by chunk, into an ``.npy`` that survives a kill.

>>> fn = macrogene_chunk_embedder(model, axis, "human")        # or uce_/genecompass_chunk_embedder
>>> z = embed_to_npy(CellSource("atlas.h5ad"), fn, "atlas.X_unify.npy", chunk_size=20_000)

:func:`embed_to_npy` writes each chunk's rows into ``<out>.partial`` (a NumPy memmap, flushed to
disk) and then records the chunk as done in ``<out>.progress.json`` (written atomically). A run
killed at any moment resumes from that record: finished chunks are neither read nor recomputed.
When every chunk is done the partial file is renamed to ``<out>`` and the record removed. Memory:
one chunk of counts and its embedding, plus the model.

Every chunk embedder is a function ``Chunk -> (n_cells, dim) float32`` whose rows depend on their
own cell only (the three models' embeddings do: no batch statistics), so chunking never changes
the result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from scprior.data.species import get_species
from scprior.data.stream import CellSource, Chunk, GeneAligner
from scprior.errors import ScpriorInputError
from scprior.safe_io import check_writable, write_text_atomic

ChunkEmbedder = Callable[[Chunk], np.ndarray]


def _record_path(out: Path) -> Path:
    return out.with_name(out.name + ".progress.json")


def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def embed_to_npy(source: CellSource, embed_fn: ChunkEmbedder, out: str | os.PathLike, *, chunk_size: int = 10_000,
                 progress: bool = False, desc: str = "embed") -> np.memmap:
    """Embed every cell of ``source`` with ``embed_fn`` into ``out`` (.npy, float32, (n_cells, dim),
    rows in the source's cell order); resume a killed run from ``<out>.progress.json``.

    A record made for another source, chunk size or dimension is refused (delete it and the
    ``.partial`` file to start over). Returns the finished array memory-mapped read-only.
    """
    out = Path(out)
    check_writable(out.parent)
    record, partial = _record_path(out), _partial_path(out)
    want = {"source": source.fingerprint(), "n_obs": source.n_obs, "chunk_size": int(chunk_size)}
    n_chunks = source.n_chunks(chunk_size)
    done: set[int] = set()
    mm = None
    if record.exists() and partial.exists():
        try:
            state = json.loads(record.read_text())
        except json.JSONDecodeError:
            raise ScpriorInputError(f"{record} is corrupt; delete it and {partial} to start over.") from None
        if {k: state.get(k) for k in want} != want:
            raise ScpriorInputError(f"{record} belongs to another run ({ {k: state.get(k) for k in want} } vs {want}); "
                                    f"delete it and {partial} to start over, or choose another output path.")
        done = {int(i) for i in state["done"]}
        mm = np.lib.format.open_memmap(partial, mode="r+")
        if mm.shape[0] != source.n_obs:
            raise ScpriorInputError(f"{partial} has {mm.shape[0]} rows for {source.n_obs} cells; delete it.")
    dim = None if mm is None else int(mm.shape[1])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_chunks, initial=len(done), desc=desc, unit="chunk", leave=False)
    for chunk in source.chunks(chunk_size, skip=done):
        z = np.asarray(embed_fn(chunk), dtype=np.float32)
        if z.ndim != 2 or len(z) != chunk.n_obs:
            raise ValueError(f"embed_fn returned shape {z.shape} for a chunk of {chunk.n_obs} cells")
        if mm is None:
            dim = int(z.shape[1])
            mm = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(source.n_obs, dim))
        if z.shape[1] != dim:
            raise ValueError(f"embed_fn returned {z.shape[1]} columns, earlier chunks {dim}")
        mm[chunk.start:chunk.start + chunk.n_obs] = z
        mm.flush()  # rows on disk before the record says the chunk is done
        done.add(chunk.index)
        write_text_atomic(record, json.dumps({**want, "dim": dim, "done": sorted(done)}))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if mm is None:
        raise ScpriorInputError("The source has no cells to embed.")
    del mm
    os.replace(partial, out)
    record.unlink()
    return np.load(out, mmap_mode="r")


# ------------------------------------------------------------------------- chunk embedders
def macrogene_chunk_embedder(model, axis: pd.DataFrame, species: str, *, normalize: bool = True,
                             batch_size: int = 512) -> ChunkEmbedder:
    """Chunks of ``species`` cells -> the macrogene integrator's embedding, the same maths as
    :func:`scprior.models.macrogene_integrator.embed` (eval mode: ``encoder(cat_k ReLU(LayerNorm(
    log1p(x) @ W_k)))``), computed on the cell's species block only: ``log1p`` of the detected
    counts scattered into one reused dense buffer per batch, one product with every set's ``W``
    side by side. Genes are aligned to the axis once per distinct ``var_names``."""
    name = get_species(species).name
    mask = (axis["species"] == name).to_numpy()
    if not mask.any():
        raise ScpriorInputError(f"The model was not trained on {name}; it knows {sorted(axis['species'].unique())}.")
    aligner = GeneAligner(axis.loc[mask, "gene"].tolist())
    lo = int(np.flatnonzero(mask)[0])
    n_block = int(mask.sum())
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        names = list(model.macrogenes)
        w = torch.cat([model.macrogenes[k].weights()[lo:lo + n_block] for k in names], dim=1).detach()
        widths = [model.macrogenes[k].n_macrogenes for k in names]
    buf = torch.zeros(batch_size, n_block, device="cpu")
    flat = buf.numpy().reshape(-1)

    @torch.no_grad()
    def embed(chunk: Chunk) -> np.ndarray:
        block = aligner.align(chunk.counts, chunk.adata.var_names)
        out = []
        for a in range(0, block.shape[0], batch_size):
            rows = block[a:a + batch_size]
            n = rows.shape[0]
            buf.zero_()
            r = np.repeat(np.arange(n), np.diff(rows.indptr))
            flat[r * n_block + rows.indices] = np.log1p(rows.data)
            act = buf[:n].to(device) @ w
            parts = [F.relu(model.norms[k](p)) for k, p in zip(names, torch.split(act, widths, dim=1))]
            z = model.encoder(torch.cat(parts, dim=1))
            out.append((F.normalize(z, dim=1) if normalize else z).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.config.latent_dim), dtype=np.float32)

    return embed


def uce_chunk_embedder(model, vocab, species: str, *, seed: int = 0, batch_size: int = 64) -> ChunkEmbedder:
    """Chunks of ``species`` cells -> UCE-style embedding (:func:`scprior.models.uce.embed_cells`;
    each cell's sentence is seeded by its own counts, so chunking does not change it)."""
    from scprior.models.uce import embed_cells

    def embed(chunk: Chunk) -> np.ndarray:
        return embed_cells(model, vocab, {species: chunk.adata}, layer=None, seed=seed, batch_size=batch_size)

    return embed


def genecompass_chunk_embedder(gc, species: str, *, batch_size: int = 128) -> ChunkEmbedder:
    """Chunks of ``species`` cells -> GeneCompass cell embeddings (rank-encoded per chunk with the
    model's own medians; token ids looked up once per var_names)."""
    cache: dict[int, np.ndarray] = {}
    from scprior.models.genecompass.encoding import rank_encode

    med_all = gc.vocab.token_medians()

    def embed(chunk: Chunk) -> np.ndarray:
        names = list(chunk.adata.var_names.astype(str))
        key = hash(tuple(names))
        if key not in cache:
            cache[key] = gc.vocab.column_tokens(names, species)
        tokens = cache[key]
        med = np.where(tokens >= 0, med_all[np.maximum(tokens, 0)], 1.0)
        enc = rank_encode(chunk.counts, tokens, med, species, top_k=gc.config.top_k)
        return gc.embed(enc, batch_size=batch_size)

    return embed
