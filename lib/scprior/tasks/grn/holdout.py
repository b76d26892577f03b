"""Held-out TFs: the GRN prior must not contain what deletion is scored on.

GeneCompass's gene tokens carry a GRN prior (here the Pathway Commons regulon). Deletion is scored
on a set of **held-out TFs** whose edges are all removed from that prior before pretraining:
:func:`prior_without` drops every regulon edge that touches a held-out TF, as regulator *or* as
target (an edge ``gene -> TF`` would tie the pair together in the prior too), and
:func:`check_no_leak` fails if any scored pair is still in the prior. Baselines are scored on the
same held-out TFs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError


def choose_heldout_tfs(candidates: Sequence[str], n: int, *, seed: int = 0, include: Iterable[str] = ()) -> list[str]:
    """``n`` TFs: the ``include`` ones present among ``candidates`` first, then a seeded draw; sorted."""
    candidates = sorted(dict.fromkeys(str(c) for c in candidates))
    if n <= 0 or not candidates:
        raise ScpriorInputError(f"Cannot hold out {n} TFs from {len(candidates)} candidates "
                                "(TFs with ground-truth targets among the genes of the data).")
    first = [t for t in dict.fromkeys(include) if t in set(candidates)][:n]
    rest = [c for c in candidates if c not in set(first)]
    rng = np.random.default_rng(seed)
    drawn = list(rng.choice(rest, size=min(n - len(first), len(rest)), replace=False)) if rest else []
    return sorted(first + [str(t) for t in drawn])


def prior_without(regulon: pd.DataFrame, heldout: Iterable[str]) -> pd.DataFrame:
    """The regulon (``tf``, ``target``, ...) without any edge touching a held-out TF."""
    held = {str(t).upper() for t in heldout}
    tf, target = regulon["tf"].astype(str).str.upper(), regulon["target"].astype(str).str.upper()
    return regulon[~tf.isin(held) & ~target.isin(held)].reset_index(drop=True)


def check_no_leak(prior: pd.DataFrame, heldout: Iterable[str], genes: Iterable[str]) -> None:
    """Raise if the prior holds any pair (held-out TF, gene) in either direction."""
    held = {str(t).upper() for t in heldout}
    genes = {str(g).upper() for g in genes}
    tf, target = prior["tf"].astype(str).str.upper(), prior["target"].astype(str).str.upper()
    leak = (tf.isin(held) & target.isin(genes)) | (target.isin(held) & tf.isin(genes))
    if leak.any():
        example = prior[leak].head(3)[["tf", "target"]].to_dict("records")
        raise ScpriorInputError(f"The GRN prior still holds {int(leak.sum())} edges of held-out TFs "
                                f"(e.g. {example}); build it with prior_without(regulon, heldout).")
