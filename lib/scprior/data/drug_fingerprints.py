"""Drug features: RDKit Morgan fingerprints of SMILES (chemCPA's drug features) and Tanimoto similarity."""

from __future__ import annotations

import numpy as np

from scprior.errors import ScpriorInputError


def morgan_fingerprints(smiles: list[str], *, radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """RDKit Morgan (ECFP-like) bit vectors (len(smiles), n_bits) float32, chemCPA's drug features.

    Salts / counter-ions (``.``-separated fragments) are dropped, keeping the largest fragment.
    An unparsable SMILES raises :class:`ScpriorInputError` naming it.
    """
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.float32)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(str(s)) if s else None
        if mol is None:
            raise ScpriorInputError(f"SMILES {s!r} (row {i}) cannot be parsed by RDKit; fix or drop that drug.")
        frags = Chem.GetMolFrags(mol, asMols=True)
        mol = max(frags, key=lambda m: m.GetNumHeavyAtoms())
        out[i] = gen.GetFingerprintAsNumPy(mol).astype(np.float32)
    return out


def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto similarity between bit-vector rows of ``a`` (n, F) and ``b`` (m, F): (n, m)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
