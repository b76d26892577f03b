"""Evidence that gene embeddings carry knowledge (notebook 00_knowledge).

Every check returns plain numbers next to a control that should score at chance:

- :func:`pair_auroc`: do related gene pairs (one-to-one orthologs across species, or genes sharing
  a Pfam domain) have higher cosine similarity than random pairs? AUROC, plus the same with the
  embedding rows shuffled across genes (control, ~0.5).
- :func:`ortholog_retrieval`: rank of the true ortholog among all genes of the other species.
- :func:`function_check`: GenePT-style; 5-fold cross-validated AUROC of a logistic regression that
  predicts gene-set membership from the embedding, beside the same with shuffled rows.
- :func:`symbol_ngram_embeddings` / :func:`aa_composition_embedding`: simple baselines (character
  3-grams of the symbol; amino-acid composition) scored by the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings


def _unit(mat: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return mat / np.where(norms == 0, 1.0, norms)


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, np.r_[pos, neg]))


def shuffled(emb: GeneEmbeddings, *, seed: int = 0) -> GeneEmbeddings:
    """Control: the same vectors assigned to randomly permuted genes."""
    rng = np.random.default_rng(seed)
    return GeneEmbeddings(emb.symbols, emb.matrix[rng.permutation(len(emb))], emb.species,
                          f"{emb.source}_shuffled", {**emb.provenance, "control": "rows shuffled"})


# --------------------------------------------------------------------------------- pair checks
def cosine_pairs(emb_a: GeneEmbeddings, emb_b: GeneEmbeddings, pairs: pd.DataFrame) -> np.ndarray:
    """Cosine similarity of each (``a``, ``b``) row of ``pairs``; both genes must be embedded."""
    a, _ = emb_a.lookup(pairs["a"].tolist())
    b, _ = emb_b.lookup(pairs["b"].tolist())
    return np.sum(_unit(a) * _unit(b), axis=1)


def permuted_pairs(related: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Random pairs with the same genes as ``related``: each ``a`` paired with a random other
    pair's ``b`` (self pairs and related pairs are redrawn), so both sides keep their gene
    distribution and only the pairing is random."""
    rng = np.random.default_rng(seed)
    a, b = related["a"].to_numpy(dtype=object), related["b"].to_numpy(dtype=object)
    known = set(zip(a, b)) | set(zip(b, a))
    out_b = b[rng.permutation(len(b))]
    for _ in range(20):
        bad = np.array([x == y or (x, y) in known for x, y in zip(a, out_b)])
        if not bad.any():
            break
        out_b[bad] = b[rng.integers(0, len(b), int(bad.sum()))]
    keep = np.array([x != y and (x, y) not in known for x, y in zip(a, out_b)])
    return pd.DataFrame({"a": a[keep], "b": out_b[keep]})


def pair_auroc(emb_a: GeneEmbeddings, emb_b: GeneEmbeddings, related: pd.DataFrame, *,
               max_pairs: int = 5000, seed: int = 0) -> dict:
    """AUROC of cosine similarity: ``related`` pairs (columns ``a`` in emb_a, ``b`` in emb_b) vs
    random pairs of the same genes (:func:`permuted_pairs`); also with emb_b's rows shuffled
    across genes (control, ~0.5).

    Pairs with a gene lacking a vector are dropped (counted in ``n_pairs``). Returns ``auroc``,
    ``shuffled_auroc``, ``n_pairs``, mean cosine of related and random pairs, and the similarity
    arrays (``related_sim``, ``random_sim``) for plotting.
    """
    rel = related[related["a"].isin(set(emb_a.symbols)) & related["b"].isin(set(emb_b.symbols))]
    rel = rel.drop_duplicates(["a", "b"])
    if len(rel) < 10:
        raise ScpriorInputError(f"Only {len(rel)} related pairs have both vectors; need at least 10.")
    if len(rel) > max_pairs:
        rel = rel.sample(max_pairs, random_state=seed)
    rnd = permuted_pairs(rel, seed=seed)
    pos, neg = cosine_pairs(emb_a, emb_b, rel), cosine_pairs(emb_a, emb_b, rnd)
    ctrl_b = shuffled(emb_b, seed=seed + 1)
    ctrl = _auroc(cosine_pairs(emb_a, ctrl_b, rel), cosine_pairs(emb_a, ctrl_b, rnd))
    return {"auroc": _auroc(pos, neg), "shuffled_auroc": ctrl, "n_pairs": int(len(rel)),
            "mean_cos_related": float(pos.mean()), "mean_cos_random": float(neg.mean()),
            "related_sim": pos, "random_sim": neg}


def ortholog_retrieval(emb_h: GeneEmbeddings, emb_m: GeneEmbeddings, one2one: Mapping[str, str], *,
                       max_queries: int = 2000, seed: int = 0) -> dict:
    """For human genes with an embedded one-to-one mouse ortholog: rank of that ortholog among all
    embedded mouse genes by cosine (1 = best). Returns ``top1``, ``top10`` (fractions),
    ``median_rank``, ``n_queries``, ``n_candidates``, and ``chance_top10``."""
    pairs = [(h, m) for h, m in one2one.items() if h in emb_h and m in emb_m]
    if not pairs:
        raise ScpriorInputError("No one-to-one ortholog pair has both embeddings.")
    rng = np.random.default_rng(seed)
    if len(pairs) > max_queries:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_queries, replace=False))]
    q, _ = emb_h.lookup([h for h, _ in pairs])
    mouse = _unit(emb_m.matrix)
    sims = _unit(q) @ mouse.T
    target = np.array([emb_m._index[m.upper()] for _, m in pairs])
    true = sims[np.arange(len(pairs)), target]
    ranks = 1 + (sims > true[:, None]).sum(axis=1)
    return {"top1": float(np.mean(ranks == 1)), "top10": float(np.mean(ranks <= 10)),
            "median_rank": float(np.median(ranks)), "n_queries": len(pairs), "n_candidates": len(emb_m),
            "chance_top10": min(1.0, 10 / len(emb_m))}


def shared_domain_pairs(domains: pd.DataFrame, *, max_family_size: int = 50) -> pd.DataFrame:
    """Gene pairs (``a`` < ``b``) sharing a Pfam domain, from families of 2..``max_family_size``
    genes (large promiscuous domains such as zinc fingers are left out)."""
    rows = []
    for _, genes in domains.groupby("pfam_id")["symbol"]:
        genes = sorted(set(genes))
        if 2 <= len(genes) <= max_family_size:
            rows += [(a, b) for i, a in enumerate(genes) for b in genes[i + 1:]]
    return pd.DataFrame(sorted(set(rows)), columns=["a", "b"])


# ------------------------------------------------------------------------------ function check
def function_check(emb: GeneEmbeddings, gene_sets: Mapping[str, Sequence[str]], *, min_members: int = 20,
                   negatives_per_positive: int = 5, folds: int = 5, max_sets: int | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """GenePT-style gene-function check, one row per gene set.

    For each set with at least ``min_members`` embedded members: positives = members, negatives =
    ``negatives_per_positive`` x as many random embedded non-members; ``folds``-fold stratified CV
    of a logistic regression (standardised features) -> mean test AUROC. The same with the
    embedding rows shuffled across genes is the control. Columns: ``set``, ``n_members``,
    ``auroc``, ``shuffled_auroc``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    control = shuffled(emb, seed=seed + 1)
    upper = np.array([s.upper() for s in emb.symbols])
    rows = []
    for name in sorted(gene_sets):
        members = {g.upper() for g in gene_sets[name]}
        pos = np.flatnonzero(np.isin(upper, list(members)))
        if len(pos) < min_members:
            continue
        if max_sets is not None and len(rows) >= max_sets:
            break
        others = np.setdiff1d(np.arange(len(emb)), pos)
        neg = rng.choice(others, min(len(others), negatives_per_positive * len(pos)), replace=False)
        idx = np.r_[pos, neg]
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        scores = {}
        for label, e in (("auroc", emb), ("shuffled_auroc", control)):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            scores[label] = float(cross_val_score(model, e.matrix[idx], y, cv=cv, scoring="roc_auc").mean())
        rows.append({"set": name, "n_members": int(len(pos)), **scores})
    return pd.DataFrame(rows, columns=["set", "n_members", "auroc", "shuffled_auroc"])


# ----------------------------------------------------------------------------------- baselines
def symbol_ngram_embeddings(symbols: Mapping[str, Sequence[str]], *, dim: int = 64,
                            seed: int = 0) -> dict[str, GeneEmbeddings]:
    """Baseline: character 1-3-gram TF-IDF of the upper-cased symbol, reduced by SVD to ``dim``.

    ``symbols`` maps species -> symbols; one vectoriser and SVD are fitted on all of them, so the
    species share a space. Knows only how a symbol is spelled: orthologs spelled alike (KLF1/Klf1)
    match trivially, renamed ones (TP53/Trp53) partly.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    names = [(sp, str(s)) for sp, syms in symbols.items() for s in syms]
    text = [f" {s.upper()} " for _, s in names]
    x = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False).fit_transform(text)
    z = TruncatedSVD(n_components=min(dim, x.shape[1] - 1, len(text) - 1), random_state=seed).fit_transform(x)
    out, start = {}, 0
    for sp, syms in symbols.items():
        n = len(syms)
        out[sp] = GeneEmbeddings(np.asarray([str(s) for s in syms], dtype=object), z[start:start + n], sp,
                                 "baseline_symbol_ngram")
        start += n
    return out


def aa_composition_embedding(proteins: pd.DataFrame, species: str) -> GeneEmbeddings:
    """Baseline: amino-acid composition (20 frequencies, centred) of each gene's protein."""
    from scprior.knowledge.protein_kmer import kmer_counts

    counts = kmer_counts(proteins["sequence"].tolist(), ks=(1,)).toarray()
    freq = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return GeneEmbeddings(proteins["symbol"].to_numpy(dtype=object), freq - freq.mean(axis=0), species,
                          "baseline_aa_composition")


def gene_family(symbols: Sequence[str]) -> pd.Series:
    """A readable family label from the symbol for plots (``""`` if none of the listed families).

    Families: ribosomal proteins (RPL/RPS), keratins (KRT), olfactory receptors (OR), zinc-finger
    proteins (ZNF), solute carriers (SLC), collagens (COL), HLA, histones, kinesins (KIF),
    protocadherins (PCDH); mouse symbols are matched case-insensitively.
    """
    patterns = [("ribosomal protein", r"^RP[LS]\d"), ("keratin", r"^KRT\d"), ("olfactory receptor", r"^OR\d"),
                ("zinc finger (ZNF)", r"^ZFP\d|^ZNF\d"), ("solute carrier", r"^SLC\d"), ("collagen", r"^COL\d"),
                ("HLA / H2", r"^HLA-|^H2-"), ("histone", r"^H[1-4]C\d|^H2[AB]C\d|^HIST\d"), ("kinesin", r"^KIF\d"),
                ("protocadherin", r"^PCDH")]
    up = pd.Series([str(s).upper() for s in symbols], index=list(symbols))
    out = pd.Series("", index=up.index, dtype=object)
    for label, pat in reversed(patterns):
        out[up.str.contains(pat, regex=True).to_numpy()] = label
    return out
