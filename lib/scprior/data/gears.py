"""GEARS-format perturbation files: read, validate, complete (DE genes) and write.

The layout GEARS (snap-stanford/GEARS) distributes Norman, Adamson, Dixit and Replogle in, and
that scGPT / scGenePT evaluate on (``perturb_processed.h5ad``):

- ``X``: log-normalised expression (cells x genes); ``layers['counts']`` raw counts if present;
- ``obs['condition']``: ``ctrl``, ``GENE+ctrl`` / ``ctrl+GENE`` or ``GENEA+GENEB``;
- ``obs['cell_type']``; ``obs['dose_val']`` (``'1'`` for ctrl, ``'1+1'`` otherwise),
  ``obs['control']`` (1 for ctrl), ``obs['condition_name']`` = ``{cell_type}_{condition}_{dose_val}``;
- ``var['gene_name']``: gene symbols (``var_names`` may be Ensembl ids);
- ``uns['rank_genes_groups_cov_all']``: condition_name -> all ``var_names`` ranked by |t| against
  the control cells of the same cell type (scanpy ``rank_genes_groups``, t-test, ``rankby_abs``);
- ``uns['top_non_dropout_de_20']``: condition_name -> the first 20 of that ranking that are not
  dropouts (mean > 0 in the condition, or 0 in both condition and control); also
  ``top_non_zero_de_20``, ``non_dropout_gene_idx`` and ``non_zeros_gene_idx``.

Where to get the real files: GEARS's ``PertData.load(data_name=...)`` downloads them from Harvard
Dataverse (norman: datafile 6154020, adamson: 6154417, dixit: 6154416, replogle_k562_essential:
7458695, replogle_rpe1_essential: 7458694); each zip holds ``<name>/perturb_processed.h5ad``.
Place the file under ``data/external/`` and pass its path to :func:`read_gears`.
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.perturbations import CONTROL, parse_condition
from scprior.data.validate import check_finite, check_nonempty, is_count_matrix, read_h5ad
from scprior.errors import ScpriorInputError
from scprior.safe_io import atomic_path

DE_KEY = "rank_genes_groups_cov_all"
NON_DROPOUT_KEY = "top_non_dropout_de_20"
NON_ZERO_KEY = "top_non_zero_de_20"
OBS_REQUIRED = ("condition", "cell_type")


# ------------------------------------------------------------------------------ obs columns
def dose_val(condition: str) -> str:
    """GEARS's ``dose_val``: ``'1+1'`` for any name with a '+', ``'1'`` for ``ctrl``."""
    return "1+1" if len(str(condition).split("+")) == 2 else "1"


def condition_name(cell_type: str, condition: str) -> str:
    """GEARS's key of a condition in ``uns``: ``{cell_type}_{condition}_{dose_val}``."""
    return f"{cell_type}_{condition}_{dose_val(condition)}"


def add_condition_columns(adata: ad.AnnData) -> None:
    """Set ``obs['dose_val']``, ``obs['control']`` and ``obs['condition_name']`` (in place)."""
    cond = adata.obs["condition"].astype(str)
    ct = adata.obs["cell_type"].astype(str)
    adata.obs["dose_val"] = pd.Categorical(cond.map(dose_val))
    adata.obs["control"] = (cond == CONTROL).astype(np.int64).to_numpy()
    adata.obs["condition_name"] = pd.Categorical([condition_name(c, k) for c, k in zip(ct, cond)])


# ------------------------------------------------------------------------------ DE genes
def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _group_moments(x, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unique labels, counts, means, unbiased variances) of the rows of ``x`` per label."""
    uniq, inverse = np.unique(labels, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(labels)), (inverse, np.arange(len(labels)))), shape=(len(uniq), len(labels)))
    xs = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    sq = xs.multiply(xs) if sp.issparse(xs) else xs * xs
    n = np.bincount(inverse).astype(np.float64)
    mean = _dense(onehot @ xs) / n[:, None]
    mean_sq = _dense(onehot @ sq) / n[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n[:, None] > 1, (mean_sq - mean**2) * (n / np.maximum(n - 1, 1))[:, None], 0.0)
    return uniq, n, mean, np.maximum(var, 0.0)


def rank_de_genes(adata: ad.AnnData, *, key: str = DE_KEY) -> dict[str, list[str]]:
    """GEARS's DE ranking: per cell type, every condition against its control cells.

    The statistic of scanpy's ``rank_genes_groups(method='t-test', rankby_abs=True)`` that GEARS
    calls: Welch's t of ``X`` per gene, ``(mean_c - mean_ctrl) / sqrt(var_c/n_c + var_ctrl/n_ctrl)``
    (unbiased variances; a zero denominator scores 0), genes ranked by |t|. Unlike scanpy it also
    ranks conditions with a single cell (variance 0). Groups are ``obs['condition_name']``, the
    reference is ``{cell_type}_ctrl_1``. Stores ``uns[key]`` = condition_name -> all ``var_names``,
    most changed first, and returns it.
    """
    if "condition_name" not in adata.obs:
        add_condition_columns(adata)
    out: dict[str, list[str]] = {}
    names = np.asarray(adata.var_names.astype(str))
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    cond_names = adata.obs["condition_name"].astype(str).to_numpy()
    for ct in pd.unique(cell_types):
        mask = cell_types == ct
        reference = condition_name(ct, CONTROL)
        uniq, n, mean, var = _group_moments(adata.X[mask], cond_names[mask])
        if reference not in set(uniq):
            raise ScpriorInputError(
                f"Cell type {ct!r} has no control cells (condition 'ctrl'); GEARS ranks DE genes "
                "against the controls of the same cell type. Add control cells or drop that cell type."
            )
        r = int(np.flatnonzero(uniq == reference)[0])
        for i, group in enumerate(uniq):
            if i == r:
                continue
            denom = np.sqrt(var[i] / n[i] + var[r] / n[r])
            with np.errstate(invalid="ignore", divide="ignore"):
                t = np.where(denom > 0, (mean[i] - mean[r]) / denom, 0.0)
            t = np.nan_to_num(t, nan=0.0)
            out[str(group)] = names[np.argsort(-np.abs(t), kind="stable")].tolist()
    adata.uns[key] = out
    return out


def condition_means(adata: ad.AnnData, *, column: str = "condition") -> pd.DataFrame:
    """Mean of ``X`` per value of ``obs[column]`` (rows, in order of first appearance) x genes."""
    labels = adata.obs[column].astype(str).to_numpy()
    uniq, inverse = np.unique(labels, return_inverse=True)
    order = pd.unique(labels)
    onehot = sp.csr_matrix((np.ones(len(labels)), (inverse, np.arange(len(labels)))), shape=(len(uniq), len(labels)))
    sums = onehot @ (adata.X if sp.issparse(adata.X) else np.asarray(adata.X))
    sums = _dense(sums)
    means = sums / np.bincount(inverse)[:, None]
    return pd.DataFrame(means, index=uniq, columns=adata.var_names).loc[order]


def add_non_dropout_de(adata: ad.AnnData, *, n: int = 20) -> None:
    """GEARS's non-dropout / non-zero top-``n`` DE genes from ``uns['rank_genes_groups_cov_all']``.

    A gene is a *dropout* for a condition when its mean is 0 there but not in control. Sets
    ``uns['top_non_dropout_de_20']``, ``uns['top_non_zero_de_20']`` (arrays of ``var_names``),
    ``uns['non_dropout_gene_idx']`` and ``uns['non_zeros_gene_idx']`` (sorted gene positions).
    """
    if DE_KEY not in adata.uns:
        rank_de_genes(adata)
    if "condition_name" not in adata.obs:
        add_condition_columns(adata)
    means = condition_means(adata, column="condition_name")
    gene_pos = {g: i for i, g in enumerate(adata.var_names)}
    ctrl_rows = [k for k in means.index if k.endswith(f"_{CONTROL}_1")]
    ct_of = dict(zip(adata.obs["condition_name"].astype(str), adata.obs["cell_type"].astype(str)))
    non_dropout_top, non_zero_top, non_dropout_idx, non_zero_idx = {}, {}, {}, {}
    for key, ranked in adata.uns[DE_KEY].items():
        if key not in means.index:
            continue
        ctrl_key = condition_name(ct_of[key], CONTROL)
        ctrl = means.loc[ctrl_key if ctrl_key in means.index else ctrl_rows[0]].to_numpy()
        m = means.loc[key].to_numpy()
        nonzero = m != 0
        keep = nonzero | ((m == 0) & (ctrl == 0))
        idx = [gene_pos[g] for g in ranked]
        non_dropout_top[key] = np.asarray([adata.var_names[i] for i in idx if keep[i]][:n], dtype=object)
        non_zero_top[key] = np.asarray([adata.var_names[i] for i in idx if nonzero[i]][:n], dtype=object)
        non_dropout_idx[key] = np.flatnonzero(keep)
        non_zero_idx[key] = np.flatnonzero(nonzero)
    adata.uns[NON_DROPOUT_KEY] = non_dropout_top
    adata.uns[NON_ZERO_KEY] = non_zero_top
    adata.uns["non_dropout_gene_idx"] = non_dropout_idx
    adata.uns["non_zeros_gene_idx"] = non_zero_idx


def de_gene_positions(adata: ad.AnnData, cond_name: str, *, key: str = DE_KEY, n: int = 20) -> np.ndarray:
    """Positions (into ``var_names``) of the first ``n`` DE genes of a condition_name in ``uns[key]``."""
    table = adata.uns.get(key)
    if table is None or cond_name not in table:
        raise ScpriorInputError(
            f"uns[{key!r}] has no entry {cond_name!r}. Complete the file with "
            "scprior.data.gears.complete_gears(adata) (computes GEARS's DE genes)."
        )
    pos = pd.Index(adata.var_names).get_indexer(list(table[cond_name])[:n])
    if (pos < 0).any():
        raise ScpriorInputError(f"uns[{key!r}][{cond_name!r}] names genes that are not in var_names.")
    return pos


# ------------------------------------------------------------------------------ condition spelling
def tidy_condition(condition: str, measured: dict[str, str] | None = None) -> str:
    """``condition`` with stray spaces removed, ``ctrl`` in lower case, and each gene spelled as the
    measured gene it matches case-insensitively (``measured``: upper-cased symbol -> ``gene_name``).

    ``'ctrl '`` -> ``'ctrl'``; ``'klf1+ctrl'`` beside ``gene_name`` ``KLF1`` -> ``'KLF1+ctrl'``. Genes
    that match no measured gene are kept as written (GEARS allows unmeasured perturbations).
    """
    parts = [p.strip() for p in str(condition).strip().split("+")]
    out = []
    for p in parts:
        if p.lower() == CONTROL:
            out.append(CONTROL)
        elif measured is not None and p not in measured.values() and p.upper() in measured:
            out.append(measured[p.upper()])
        else:
            out.append(p)
    return "+".join(out)


def measured_symbols(adata: ad.AnnData) -> dict[str, str]:
    """Upper-cased ``var['gene_name']`` -> ``gene_name`` (the spelling conditions are mapped to)."""
    if "gene_name" not in adata.var:
        return {}
    names = adata.var["gene_name"].astype(str)
    return {n.upper(): n for n in names}


def condition_renames(adata: ad.AnnData) -> dict[str, str]:
    """Labels of ``obs['condition']`` that :func:`tidy_condition` would respell -> the new label."""
    measured = measured_symbols(adata)
    labels = pd.unique(adata.obs["condition"].astype(str))
    return {c: t for c in labels if (t := tidy_condition(c, measured)) != c}


def apply_condition_renames(adata: ad.AnnData) -> dict[str, str]:
    """Respell ``obs['condition']`` by :func:`condition_renames` (in place) and re-key the DE tables
    in ``uns`` to the new condition names; return the renames (empty: nothing changed)."""
    renames = condition_renames(adata)
    if not renames:
        adata.obs["condition"] = adata.obs["condition"].astype(str)
        return renames
    old = adata.obs["condition"].astype(str)
    new = old.replace(renames)
    if "cell_type" in adata.obs:
        ct = adata.obs["cell_type"].astype(str)
        keys = {condition_name(t, o): condition_name(t, n) for t, o, n in zip(ct, old, new) if o != n}
        for table in (DE_KEY, NON_DROPOUT_KEY, NON_ZERO_KEY, "non_dropout_gene_idx", "non_zeros_gene_idx"):
            if isinstance(adata.uns.get(table), dict):
                adata.uns[table] = {keys.get(k, k): v for k, v in adata.uns[table].items()}
    adata.obs["condition"] = new
    if "condition_name" in adata.obs:
        del adata.obs["condition_name"]  # rebuilt from the respelled conditions
    return renames


# ------------------------------------------------------------------------------ validation
def _bad(name: str, what: str, fix: str) -> ScpriorInputError:
    return ScpriorInputError(f"{name} is not a valid GEARS perturbation file: {what}. {fix}")


def validate_gears(adata: ad.AnnData, *, name: str = "adata", require_de: bool = True) -> None:
    """Fail with :class:`ScpriorInputError` unless ``adata`` follows GEARS's layout (module doc)."""
    check_nonempty(adata, name=name)
    for col in OBS_REQUIRED:
        if col not in adata.obs:
            raise _bad(name, f"obs has no {col!r} column (columns: {list(adata.obs.columns)})",
                       "GEARS needs obs['condition'] ('ctrl', 'GENE+ctrl', 'A+B') and obs['cell_type'].")
        if adata.obs[col].isna().any():
            raise _bad(name, f"obs[{col!r}] has {int(adata.obs[col].isna().sum())} missing values",
                       "Fill or drop those cells.")
    conditions = pd.unique(adata.obs["condition"].astype(str))
    for c in conditions:
        try:
            parse_condition(c)
        except ScpriorInputError as exc:
            raise _bad(name, f"obs['condition'] holds {c!r}", str(exc)) from None
    renames = condition_renames(adata)
    if renames:
        shown = ", ".join(f"{k!r} -> {v!r}" for k, v in list(renames.items())[:3])
        raise _bad(name, f"obs['condition'] spells {len(renames)} label(s) unlike GEARS / var['gene_name'] "
                   f"({shown}: stray spaces, 'Ctrl', or a gene in another case than its gene_name)",
                   "Respell them: adata.obs['condition'] = adata.obs['condition'].astype(str).replace("
                   "scprior.data.gears.condition_renames(adata)) (read_gears does this when reading).")
    if CONTROL not in set(conditions):
        raise _bad(name, "no control cells (condition 'ctrl')",
                   "GEARS pairs every perturbed cell with a control cell; the file must contain them.")
    if "gene_name" not in adata.var:
        cols = [c for c in adata.var.columns if c.lower() in {"feature_name", "gene_symbol", "symbol", "gene_symbols"}]
        hint = f" It has {cols}: read it with read_gears(path, gene_name_column={cols[0]!r})." if cols else ""
        raise _bad(name, "var has no 'gene_name' column", "GEARS keeps gene symbols in var['gene_name']." + hint)
    genes = adata.var["gene_name"]
    if genes.isna().any() or (genes.astype(str).str.len() == 0).any():
        raise _bad(name, "var['gene_name'] has missing names", "Name every gene or drop the unnamed ones.")
    if not genes.astype(str).is_unique:
        dups = genes[genes.astype(str).duplicated()].astype(str).unique()[:5].tolist()
        raise _bad(name, f"var['gene_name'] has duplicates (e.g. {dups})", "Sum or drop duplicated genes.")
    if not pd.Index(adata.var_names).is_unique:
        raise _bad(name, "var_names are not unique", "Call adata.var_names_make_unique() first.")
    check_finite(adata.X, name=f"{name}.X")
    vals = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if vals.size and float(np.min(vals)) < 0:
        raise _bad(name, "X has negative values (scaled data?)",
                   "GEARS files hold log1p(normalize_total(counts)) in X; pass that, not z-scores.")
    if vals.size and float(np.max(vals)) > 0 and is_count_matrix(adata.X):
        raise _bad(name, "X holds raw integer counts",
                   "GEARS files hold log-normalised X. Keep counts in layers['counts'] and set "
                   "X = log1p(normalize_total(counts, 1e4)) (scprior.data.anndata_conventions.log_normalise).")
    if "condition_name" in adata.obs:
        expected = [condition_name(ct, c) for ct, c in zip(adata.obs["cell_type"].astype(str), adata.obs["condition"].astype(str))]
        mismatch = np.flatnonzero(adata.obs["condition_name"].astype(str).to_numpy() != np.asarray(expected))
        if len(mismatch):
            i = mismatch[0]
            raise _bad(name, f"obs['condition_name'] {adata.obs['condition_name'].iloc[i]!r} does not match "
                       f"'{{cell_type}}_{{condition}}_{{dose_val}}' = {expected[i]!r}",
                       "Drop the column and let scprior.data.gears.add_condition_columns rebuild it.")
    if require_de:
        names = pd.unique(adata.obs["condition_name"].astype(str)) if "condition_name" in adata.obs else []
        var = set(adata.var_names)
        for key in (DE_KEY, NON_DROPOUT_KEY):
            if key not in adata.uns:
                raise _bad(name, f"uns has no {key!r}",
                           "Compute GEARS's DE genes with scprior.data.gears.complete_gears(adata) "
                           "(read_gears does it by default).")
            table = adata.uns[key]
            missing = [k for k in names if not k.endswith(f"_{CONTROL}_1") and k not in table]
            if missing:
                raise _bad(name, f"uns[{key!r}] lacks {len(missing)} condition(s), e.g. {missing[:3]}",
                           "Its keys must be obs['condition_name'] values; recompute with complete_gears(adata).")
            for k in list(table)[:50]:
                unknown = [g for g in list(table[k])[:20] if g not in var]
                if unknown:
                    raise _bad(name, f"uns[{key!r}][{k!r}] names genes not in var_names (e.g. {unknown[:3]})",
                               "DE lists hold var_names; recompute with complete_gears(adata).")


def complete_gears(adata: ad.AnnData) -> ad.AnnData:
    """Add what a GEARS file may lack (obs columns, DE rankings, non-dropout DE) in place; return it."""
    add_condition_columns(adata)
    if DE_KEY not in adata.uns:
        rank_de_genes(adata)
    if NON_DROPOUT_KEY not in adata.uns:
        add_non_dropout_de(adata)
    return adata


# ------------------------------------------------------------------------------ read / write
def read_gears(path: str | os.PathLike, *, gene_name_column: str = "gene_name",
               compute_missing_de: bool = True) -> ad.AnnData:
    """Read a GEARS ``perturb_processed.h5ad`` (or any file in that layout) and validate it.

    ``gene_name_column`` names the var column holding symbols when it is not ``gene_name``
    (copied into ``var['gene_name']``). With ``compute_missing_de`` the obs columns and DE-gene
    tables GEARS needs are computed when absent (in memory; the file is never modified).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. GEARS files come from Harvard Dataverse via GEARS's PertData.load "
            "(see scprior.data.gears); put perturb_processed.h5ad under data/external/."
        )
    adata = read_h5ad(path, what="GEARS perturbation file")
    if gene_name_column != "gene_name":
        if gene_name_column not in adata.var:
            raise ScpriorInputError(f"{path.name}: var has no column {gene_name_column!r} (has {list(adata.var.columns)}).")
        adata.var["gene_name"] = adata.var[gene_name_column].astype(str)
    if "condition" in adata.obs and not adata.obs["condition"].isna().any():
        apply_condition_renames(adata)
    validate_gears(adata, name=path.name, require_de=False)
    if compute_missing_de:
        complete_gears(adata)
    validate_gears(adata, name=path.name, require_de=True)
    return adata


def write_gears(adata: ad.AnnData, path: str | os.PathLike) -> Path:
    """Validate and write ``adata`` atomically as a GEARS-format h5ad."""
    validate_gears(adata, name=Path(path).name)
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    return path


def subsample_conditions(adata: ad.AnnData, *, n_conditions: int | None = None, max_cells: int | None = None,
                         seed: int = 0) -> ad.AnnData:
    """A smaller copy (quick mode): control + up to ``n_conditions`` perturbations, at most
    ``max_cells`` cells each. Doubles are drawn first and come with their singles when present;
    the DE tables are kept (they were computed on the full data)."""
    from scprior.data.perturbations import is_combo, parse_condition

    rng = np.random.default_rng(seed)
    labels = adata.obs["condition"].astype(str).to_numpy()
    perts = [c for c in pd.unique(labels) if c != CONTROL]
    keep = list(perts)
    if n_conditions is not None and n_conditions < len(perts):
        singles = {parse_condition(c)[0]: c for c in perts if not is_combo(c)}
        chosen: list[str] = []
        for c in rng.permutation([c for c in perts if is_combo(c)]):
            extra = [c] + [singles[g] for g in parse_condition(c) if g in singles and singles[g] not in chosen]
            if len(chosen) + len(extra) > n_conditions * 2 // 3:
                break
            chosen += extra
        rest = [c for c in rng.permutation(perts) if c not in chosen]
        keep = chosen + rest[: max(n_conditions - len(chosen), 0)]
    cells = []
    for c in [CONTROL, *keep]:
        idx = np.flatnonzero(labels == c)
        if max_cells is not None and len(idx) > max_cells:
            idx = np.sort(rng.choice(idx, max_cells, replace=False))
        cells.append(idx)
    out = adata[np.sort(np.concatenate(cells))].copy()
    out.obs["condition"] = out.obs["condition"].astype(str)
    return out


def pair_controls(conditions, *, rng: np.random.Generator | int = 0, cells=None) -> np.ndarray:
    """GEARS's cell pairing: for each cell (``cells``, default all) the index of a control cell.

    ``conditions``: the condition label of every cell (``obs['condition']``). Perturbed cells get a
    control cell drawn at random (with replacement, as GEARS's ``create_cell_graph_dataset``);
    control cells are paired with themselves (GEARS trains on ctrl -> ctrl too).
    """
    labels = np.asarray(conditions, dtype=object).astype(str)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    ctrl = np.flatnonzero(labels == CONTROL)
    if len(ctrl) == 0:
        raise ScpriorInputError("No control cells ('ctrl') to pair perturbed cells with.")
    cells = np.arange(len(labels)) if cells is None else np.asarray(cells)
    return np.where(labels[cells] == CONTROL, cells, rng.choice(ctrl, len(cells)))
