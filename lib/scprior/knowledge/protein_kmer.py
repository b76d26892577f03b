"""``protein_kmer``: an honest protein-sequence embedding without a protein language model.

Counts of amino-acid k-mers (k = 1, 2, 3 over the 20 standard residues: 8,420 features),
sublinear TF-IDF, L2 normalisation, then a seeded truncated SVD to ``dim`` components, rows
L2-normalised. Similar sequences (paralogs, shared domains) get similar vectors; it knows nothing
of structure or evolution beyond that. It is not ESM; real ESM embeddings plug in through
:mod:`scprior.knowledge.formats` or :mod:`scprior.knowledge.esm`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from scprior.errors import ScpriorInputError
from scprior.knowledge.proteins import AMINO_ACIDS

_LOOKUP = np.full(256, -1, dtype=np.int64)
_LOOKUP[np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)] = np.arange(20)


def kmer_counts(sequences: Sequence[str], ks: Sequence[int] = (1, 2, 3)) -> sp.csr_matrix:
    """Sparse (n_sequences, sum 20**k) counts of k-mers; k-mers with a non-standard residue are skipped."""
    if len(sequences) == 0:
        raise ScpriorInputError("No protein sequences to embed.")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    codes = _LOOKUP[np.frombuffer("".join(sequences).upper().encode("ascii", "replace"), dtype=np.uint8)]
    seq_id = np.repeat(np.arange(len(sequences)), lengths)
    rows, cols, offset = [], [], 0
    for k in ks:
        if k < 1:
            raise ValueError(f"k-mer sizes must be >= 1, got {k}")
        n = len(codes) - k + 1
        if n <= 0:
            offset += 20**k
            continue
        code = np.zeros(n, dtype=np.int64)
        valid = seq_id[:n] == seq_id[k - 1:]
        for j in range(k):
            part = codes[j: j + n]
            valid &= part >= 0
            code = code * 20 + np.maximum(part, 0)
        rows.append(seq_id[:n][valid])
        cols.append(code[valid] + offset)
        offset += 20**k
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    mat = sp.coo_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(sequences), offset))
    return mat.tocsr()  # duplicates summed


def protein_kmer_embedding(sequences: Sequence[str], *, dim: int = 256, ks: Sequence[int] = (1, 2, 3),
                           seed: int = 0) -> np.ndarray:
    """Embed protein sequences -> float32 (n, dim) with unit-norm rows (see module docstring).

    The SVD is fitted on the given sequences; ``dim`` is capped at ``n - 1``.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize

    counts = kmer_counts(sequences, ks)
    tfidf = TfidfTransformer(sublinear_tf=True, norm="l2").fit_transform(counts)
    n_comp = max(1, min(dim, tfidf.shape[0] - 1, tfidf.shape[1] - 1))
    svd = TruncatedSVD(n_components=n_comp, algorithm="randomized", n_iter=5, random_state=seed)
    z = svd.fit_transform(tfidf)
    # fix each component's sign (largest |loading| positive) so results do not depend on the solver
    signs = np.sign(svd.components_[np.arange(n_comp), np.abs(svd.components_).argmax(axis=1)])
    z = z * np.where(signs == 0, 1.0, signs)
    return normalize(z).astype(np.float32)
