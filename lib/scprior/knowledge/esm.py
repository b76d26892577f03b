"""Protein-language-model gene embeddings with fair-esm, for users who have ESM weights.

No ESM weights can be downloaded here, so nothing in the pipeline calls this; a user with a
checkpoint (e.g. ``esm2_t33_650M_UR50D.pt``) runs::

    from scprior.knowledge import esm, store
    model, alphabet = esm.load_esm_model("/path/to/esm2_t33_650M_UR50D.pt")
    seqs = store.load_protein_sequences("human")
    emb = esm.embed_proteins(seqs, model=model, alphabet=alphabet, source="esm2_650m")
    store.save_embeddings(emb, "data/processed/knowledge")   # then load_embeddings("esm2_650m", "human")

A gene's vector is the mean over residues of the last layer's representations (BOS/EOS/padding
excluded), as SATURN and UCE build theirs; sequences longer than ``max_length`` are embedded in
consecutive windows and the residue means are combined weighted by window length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.safe_io import load_torch_tensors


def load_esm_model(weights: str | os.PathLike):
    """Load a fair-esm checkpoint file the user already has -> ``(model, alphabet)`` in eval mode.

    The file is read with ``torch.load(weights_only=True)``: tensors, plain data and the one
    class fair-esm checkpoints hold (``argparse.Namespace``) only, so a tampered download cannot
    run code. The model name is the file stem (``esm2_t33_650M_UR50D``), as fair-esm expects.
    """
    import argparse

    import esm

    path = Path(weights)
    if not path.is_file():
        raise ScpriorInputError(
            f"ESM weights {path} not found. scprior never downloads them: put a fair-esm checkpoint "
            "(e.g. esm2_t33_650M_UR50D.pt) on disk and pass its path."
        )
    data = load_torch_tensors(path, allowed=[argparse.Namespace], what="ESM weights")
    if not isinstance(data, dict) or "model" not in data:
        raise ScpriorInputError(f"ESM weights {path} are not a fair-esm checkpoint (a dict with 'model' and 'cfg'/'args').")
    try:
        model, alphabet = esm.pretrained.load_model_and_alphabet_core(path.stem, data, None)
    except (KeyError, AttributeError, RuntimeError, TypeError) as exc:
        raise ScpriorInputError(
            f"ESM weights {path} do not fit fair-esm's model {path.stem!r} ({type(exc).__name__}: {exc}). Keep the "
            "file name fair-esm released it under (e.g. esm2_t33_650M_UR50D.pt) and an intact copy."
        ) from None
    return model.eval(), alphabet


def embed_proteins(sequences: pd.DataFrame | dict[str, str], *, model, alphabet, species: str = "human",
                   source: str = "esm", layer: int | None = None, max_length: int = 1022,
                   batch_size: int = 8, device: str = "auto", progress: bool = True) -> GeneEmbeddings:
    """Embed one protein per gene with an ESM model -> GeneEmbeddings (n_genes, embed_dim).

    ``sequences`` is a ``{symbol: sequence}`` dict or a protein table (``symbol``, ``sequence``
    [, ``borrowed``]) from :func:`scprior.knowledge.store.load_protein_sequences`. ``layer``
    defaults to the model's last layer. ``source`` should name the model (``"esm2_650m"``).
    """
    import torch

    from scprior.runtime import pick_device

    if isinstance(sequences, pd.DataFrame):
        if not {"symbol", "sequence"} <= set(sequences.columns):
            raise ScpriorInputError("protein table needs columns 'symbol' and 'sequence'.")
        borrowed = int(sequences["borrowed"].sum()) if "borrowed" in sequences else 0
        sequences = dict(zip(sequences["symbol"].astype(str), sequences["sequence"].astype(str)))
    else:
        borrowed = 0
    if not sequences:
        raise ScpriorInputError("No protein sequences to embed.")
    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    dev = torch.device(pick_device(device))
    model = model.to(dev).eval()
    layer = model.num_layers if layer is None else int(layer)
    converter = alphabet.get_batch_converter()

    # windows: (gene index, chunk) pairs, longest first so batches pad little
    windows = [(i, seq[s: s + max_length]) for i, seq in enumerate(sequences.values())
               for s in range(0, max(len(seq), 1), max_length)]
    windows.sort(key=lambda w: -len(w[1]))
    sums = np.zeros((len(sequences), model.embed_dim), dtype=np.float64)
    counts = np.zeros(len(sequences), dtype=np.int64)
    batches = range(0, len(windows), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"ESM ({source})", unit="batch")
    with torch.inference_mode():
        for b in batches:
            chunk = windows[b: b + batch_size]
            _, _, tokens = converter([(str(i), s) for i, s in chunk])
            out = model(tokens.to(dev), repr_layers=[layer])["representations"][layer].float().cpu().numpy()
            for k, (i, s) in enumerate(chunk):
                n = len(s)
                sums[i] += out[k, 1: n + 1].sum(axis=0)  # skip BOS; EOS/padding come after residue n
                counts[i] += n
    if (counts == 0).any():
        empty = [s for s, c in zip(sequences, counts) if c == 0][:5]
        raise ScpriorInputError(f"Empty protein sequences for {empty}; drop those genes first.")
    matrix = (sums / counts[:, None]).astype(np.float32)
    prov = {"model": source, "layer": layer, "pooling": "mean over residues", "max_length": max_length,
            "borrowed_sequences": borrowed}
    return GeneEmbeddings(np.asarray(list(sequences), dtype=object), matrix, species, source, prov)
