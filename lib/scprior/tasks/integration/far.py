"""Integrating datasets of any species, listed in ``params.yaml``: the far-species task (fly gut vs
mouse gut in notebook 01b), with no code change for a new species.

A user lists N >= 2 datasets (``path``, ``species``, ``label_key``, ``batch_key``, one gene-embedding
file per source, optional chromosome positions and orthologs); :class:`FarConfig` validates the
section, :func:`load_task` reads everything into the :class:`~.methods.TaskData` the methods of
:mod:`.methods` train on. Baselines use one-to-one orthologs through human (HCOP; SATURN's baseline
gene set); cell types are matched across species through a SATURN-format map file, else through
shared label strings (or a shared Cell Ontology id column). Unmatched types count as errors.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.species import get_species, no_embeddings_error, register_species
from scprior.errors import ScpriorInputError
from scprior.knowledge.embeddings import GeneEmbeddings
from scprior.models.species_data import stacked_obs
from scprior.paths import resolve

#: the macrogene models' embedding sets; each dataset supplies a file per set it has
EMBEDDING_SETS = ("protein", "text")


# ---------------------------------------------------------------------------------- config
@dataclass
class DatasetSpec:
    """One dataset of a ``datasets`` list in ``params.yaml``.

    ``path``: h5ad with raw counts in ``layers[layer]`` (or ``X`` when ``layer`` is empty);
    ``species``: any name (``taxon_id`` optional, used for HCOP orthologs); ``label_key`` /
    ``batch_key``: obs columns; ``embeddings``: set name (``protein``/``text``) -> gene-embedding
    file in any format :func:`scprior.knowledge.formats.read_embeddings` reads; ``chromosomes``:
    optional table (``symbol``, ``chromosome``, ``start``) for the UCE-style model; ``orthologs``:
    optional HCOP-style table (``human_symbol``, ``species``, ``symbol``) for the baselines.
    """

    name: str
    path: str
    species: str
    label_key: str = "cell_type"
    batch_key: str | None = None
    layer: str = "counts"
    taxon_id: int | None = None
    embeddings: dict[str, str] = field(default_factory=dict)
    chromosomes: str | None = None
    orthologs: str | None = None

    @classmethod
    def from_params(cls, entry: Mapping[str, Any]) -> DatasetSpec:
        if not isinstance(entry, Mapping):
            raise ScpriorInputError(f"Each `datasets` entry must be a mapping, got {entry!r}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ScpriorInputError(f"datasets entry {entry.get('name', '?')!r}: unknown key(s) {unknown}; "
                                    f"known: {sorted(known)}.")
        for key in ("name", "path", "species"):
            if not entry.get(key):
                raise ScpriorInputError(f"datasets entry {entry!r} lacks {key!r} (needs name, path, species).")
        emb = dict(entry.get("embeddings") or {})
        bad = sorted(set(emb) - set(EMBEDDING_SETS))
        if bad:
            raise ScpriorInputError(f"datasets entry {entry['name']!r}: embedding set(s) {bad} unknown; "
                                    f"the models read {list(EMBEDDING_SETS)}.")
        spec = cls(**{**dict(entry), "embeddings": {k: str(v) for k, v in emb.items()}})
        spec.species = register_species(spec.species, taxon_id=spec.taxon_id).name
        return spec


@dataclass
class FarConfig:
    """The validated ``datasets`` part of a multi-species section (see :class:`DatasetSpec`)."""

    datasets: list[DatasetSpec]
    orthologs: str | None = None  # one HCOP-style table for every species (per-dataset files override)
    cell_type_map: str | None = None  # SATURN-format map file; None: shared labels / ontology ids

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> FarConfig:
        entries = section.get("datasets")
        if not entries or len(entries) < 2:
            raise ScpriorInputError("List at least two datasets under `datasets` (name, path, species, ...).")
        specs = [DatasetSpec.from_params(e) for e in entries]
        names = [s.species for s in specs]
        if len(set(names)) != len(names):
            raise ScpriorInputError(f"Each species may appear once in `datasets`, got {names}.")
        return cls(specs, section.get("orthologs"), section.get("cell_type_map"))

    @property
    def species(self) -> list[str]:
        return [d.species for d in self.datasets]


# ------------------------------------------------------------------------------ cell-type maps
@dataclass
class CellTypeMap:
    """Which cell types match across species: per species pair ``(a, b)``, ``a`` type -> set of
    ``b`` types. ``source`` says where the matches come from (a file, or shared labels)."""

    pairs: dict[tuple[str, str], dict[str, frozenset[str]]]
    source: str

    def get(self, a: str, b: str) -> dict[str, frozenset[str]]:
        key = (get_species(a).name, get_species(b).name)
        if key not in self.pairs:
            raise ScpriorInputError(f"The cell-type map ({self.source}) does not relate {key[0]} and {key[1]}.")
        return self.pairs[key]


def read_cell_type_map(path: str | Path, species: Sequence[str]) -> CellTypeMap:
    """A SATURN-format map (CSV; one column ``<species>_cell_type`` per species, one row per match,
    an empty cell = no counterpart). Rows sharing a type give one-to-many matches."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"Cell-type map {path} not found.")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    cols = {get_species(s).name: f"{s}_cell_type" for s in species}
    missing = [c for c in cols.values() if c not in table.columns]
    if missing:
        raise ScpriorInputError(f"{path} lacks column(s) {missing} (SATURN's format: one "
                                f"'<species>_cell_type' column per species; has {list(table.columns)}).")
    pairs: dict[tuple[str, str], dict[str, frozenset[str]]] = {}
    for a, b in itertools.permutations(cols, 2):
        sub = table[(table[cols[a]].str.strip() != "") & (table[cols[b]].str.strip() != "")]
        grouped = sub.groupby(cols[a])[cols[b]].agg(lambda s: frozenset(x.strip() for x in s))
        pairs[(a, b)] = {str(k).strip(): v for k, v in grouped.items()}
    return CellTypeMap(pairs, f"file {path.name}")


def shared_label_map(adatas: Mapping[str, ad.AnnData], *, label_key: str = "cell_type",
                     ontology_key: str = "cell_ontology_id") -> CellTypeMap:
    """Matches without a map file: the same Cell Ontology id (``obs[ontology_key]`` in every
    dataset), else the same label string (case-insensitive)."""
    use_ontology = all(ontology_key in a.obs for a in adatas.values())
    pairs: dict[tuple[str, str], dict[str, frozenset[str]]] = {}

    def keyed(adata: ad.AnnData) -> dict[str, set[str]]:
        obs = adata.obs
        keys = obs[ontology_key].astype(str) if use_ontology else obs[label_key].astype(str).str.strip().str.lower()
        out: dict[str, set[str]] = {}
        for k, lab in zip(keys, obs[label_key].astype(str)):
            out.setdefault(k, set()).add(lab)
        return out

    per = {get_species(s).name: keyed(a) for s, a in adatas.items()}
    for a, b in itertools.permutations(per, 2):
        m: dict[str, set[str]] = {}
        for k, labs in per[a].items():
            for lab in labs:
                if k in per[b]:
                    m.setdefault(lab, set()).update(per[b][k])
        pairs[(a, b)] = {k: frozenset(v) for k, v in m.items()}
    return CellTypeMap(pairs, f"shared {'Cell Ontology ids' if use_ontology else 'label strings'}")


# ------------------------------------------------------------------------------------ loading
def read_dataset(spec: DatasetSpec, *, root: str | Path | None = None) -> ad.AnnData:
    """The dataset as the models read it: counts in ``layers['counts']``, ``obs['cell_type']``,
    ``obs['batch']``, ``obs['species']`` (the file is only read)."""
    from scprior.data.validate import check_obs_column

    path = resolve(spec.path) if root is None else Path(root) / spec.path
    if not Path(path).is_file():
        raise ScpriorInputError(f"Dataset {spec.name!r}: {path} not found.")
    adata = ad.read_h5ad(path)
    check_obs_column(adata, spec.label_key, name=spec.name)
    counts = adata.layers[spec.layer] if spec.layer else adata.X
    obs = pd.DataFrame(index=adata.obs_names.copy())
    obs["cell_type"] = adata.obs[spec.label_key].astype(str).to_numpy()
    if spec.batch_key:
        check_obs_column(adata, spec.batch_key, name=spec.name)
        obs["batch"] = adata.obs[spec.batch_key].astype(str).to_numpy()
    else:
        obs["batch"] = spec.name
    if "cell_ontology_id" in adata.obs:
        obs["cell_ontology_id"] = adata.obs["cell_ontology_id"].astype(str).to_numpy()
    obs["species"] = spec.species
    out = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32), obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    out.layers["counts"] = out.X.copy()
    from scprior.data.far_species import lognormalise

    out.X = lognormalise(out.layers["counts"])
    for col in ("cell_type", "batch", "species"):
        out.obs[col] = out.obs[col].astype("category")
    return out


def read_dataset_embeddings(spec: DatasetSpec, *, root: str | Path | None = None) -> dict[str, GeneEmbeddings]:
    """The dataset's embedding files, set name -> GeneEmbeddings (species = the dataset's)."""
    from scprior.knowledge.formats import read_embeddings

    out = {}
    for set_name, file in spec.embeddings.items():
        path = resolve(file) if root is None else Path(root) / file
        out[set_name] = read_embeddings(path, species=spec.species, source=embedding_source_name(path, spec.species))
    return out


def embedding_source_name(path: str | Path, species: str) -> str:
    """The embedding's source from its file name, the species taken off (``go_text_minilm_fly.parquet``
    and ``fly_go_text_minilm.pt`` -> ``go_text_minilm``): one source must serve every species."""
    stem = Path(path).name.split(".")[0]
    name = get_species(species).name
    for affix in (f"_{name}", f"-{name}"):
        if stem.lower().endswith(affix):
            stem = stem[: -len(affix)]
    for affix in (f"{name}_", f"{name}-"):
        if stem.lower().startswith(affix):
            stem = stem[len(affix):]
    return stem or "embedding"


def check_one_source_per_set(embeddings: Mapping[str, Mapping[str, GeneEmbeddings]]) -> None:
    """The macrogenes of a set pool every species' genes in one space: one source per set."""
    for set_name, per in embeddings.items():
        sources = {s: e.source for s, e in per.items()}
        if len(set(sources.values())) > 1:
            raise ScpriorInputError(
                f"The {set_name} embedding files of the species come from different sources {sources}: the "
                f"macrogenes need one space. Name the files <source>_<species>.<ext> with the same <source>.")


def check_embeddings_cover(embeddings: Mapping[str, Mapping[str, GeneEmbeddings]], species: Sequence[str],
                           sets: Sequence[str]) -> None:
    """Every species needs a file for every set a method uses: else 'no gene embeddings for species X: supply ...'."""
    for set_name in sets:
        for s in species:
            if s not in embeddings.get(set_name, {}):
                raise no_embeddings_error(s, f"{set_name} gene embeddings")


def one2one_through_human(orthologs: pd.DataFrame, adatas: Mapping[str, ad.AnnData]) -> pd.DataFrame:
    """Genes one-to-one with the same human gene in every species (HCOP table: ``human_symbol``,
    ``species``, ``symbol``), measured in every dataset. Columns: ``human`` + one per species."""
    merged = None
    for s, adata in adatas.items():
        name = get_species(s).name
        t = orthologs[orthologs["species"].astype(str) == name][["human_symbol", "symbol"]].astype(str)
        if t.empty:
            raise ScpriorInputError(f"The ortholog table has no rows for species {name!r} (has "
                                    f"{sorted(orthologs['species'].astype(str).unique())[:12]}); supply its orthologs.")
        measured = {g.upper(): g for g in adata.var_names}
        t = t[t["symbol"].str.upper().isin(measured)]
        t = t.assign(symbol=[measured[g.upper()] for g in t["symbol"]])
        t = t.drop_duplicates("human_symbol", keep=False).drop_duplicates("symbol", keep=False)
        t = t.rename(columns={"human_symbol": "human", "symbol": name})
        merged = t if merged is None else merged.merge(t, on="human")
    if merged is None or merged.empty:
        raise ScpriorInputError("No gene is one-to-one with the same human gene in every species; the ortholog "
                                "baselines need some (check symbols and the ortholog table).")
    return merged.sort_values("human").reset_index(drop=True)


def ortholog_matrix(adatas: Mapping[str, ad.AnnData], pairs: pd.DataFrame) -> ad.AnnData:
    """Cells of every species on the shared one-to-one genes (var_names: human symbols; one var
    column per species with its own symbol); ``layers['counts']``, log-normalised ``X``."""
    parts = [a[:, pairs[get_species(s).name].to_numpy()] for s, a in adatas.items()]
    counts = sp.vstack([sp.csr_matrix(p.layers["counts"]) for p in parts]).tocsr()
    x = sp.vstack([sp.csr_matrix(p.X) for p in parts]).tocsr()
    var = pd.DataFrame({get_species(s).name: pairs[get_species(s).name].to_numpy() for s in adatas},
                       index=pd.Index(pairs["human"].to_numpy()))
    out = ad.AnnData(X=x.astype(np.float32), obs=stacked_obs(adatas), var=var)
    out.layers["counts"] = counts.astype(np.float32)
    for col in ("cell_type", "batch"):
        out.obs[col] = out.obs[col].astype(str).astype("category")
    return out


@dataclass
class FarTask:
    """What notebook 01b works on: the methods' :class:`~.methods.TaskData`, the cell-type map,
    the one-to-one ortholog pairs and the gene counts the README reports."""

    task: Any  # methods.TaskData
    cell_type_map: CellTypeMap
    one2one: pd.DataFrame
    gene_counts: pd.DataFrame
    config: FarConfig


def load_task(section: Mapping[str, Any], *, n_hvg: int = 2000, n_hvg_orthologs: int = 2000,
              sets: Sequence[str] = EMBEDDING_SETS, root: str | Path | None = None) -> FarTask:
    """Read the datasets, embeddings, orthologs and map of a params section; HVGs per species among
    genes with an embedding (macrogene models) and among one-to-one orthologs (baselines)."""
    from scprior.tasks.integration.data import Knowledge, select_hvgs, species_hvgs
    from scprior.tasks.integration.methods import TaskData

    cfg = FarConfig.from_params(section)
    adatas = {d.species: read_dataset(d, root=root) for d in cfg.datasets}
    embeddings: dict[str, dict[str, GeneEmbeddings]] = {}
    for d in cfg.datasets:
        for set_name, emb in read_dataset_embeddings(d, root=root).items():
            embeddings.setdefault(set_name, {})[d.species] = emb
    check_embeddings_cover(embeddings, cfg.species, [s for s in sets if s in embeddings] or list(sets))
    check_one_source_per_set(embeddings)
    tables = []
    for d in cfg.datasets:
        file = d.orthologs or cfg.orthologs
        if file is None:
            raise ScpriorInputError(f"No ortholog table for {d.species}: set `orthologs` (HCOP-style: human_symbol, "
                                    "species, symbol) for the one-to-one baselines.")
        t = pd.read_parquet(resolve(file) if root is None else Path(root) / file) if str(file).endswith(".parquet") \
            else pd.read_csv(resolve(file) if root is None else Path(root) / file)
        tables.append(t[t["species"].astype(str) == d.species])
    orth_table = pd.concat(tables, ignore_index=True)
    pairs = one2one_through_human(orth_table, adatas)
    covered = {s: set().union(*[set(e[s].symbols) for e in embeddings.values() if s in e]) for s in adatas}
    hvg = species_hvgs(adatas, n_hvg, covered=covered)
    orth = ortholog_matrix(adatas, pairs)
    genes = select_hvgs(orth, n_hvg_orthologs, batch_key="species")
    know = Knowledge(embeddings=embeddings, gene_tables={}, orthologs=orth_table)
    task = TaskData(adatas=adatas, hvg=hvg, orthologs=orth[:, genes].copy(), knowledge=know)
    if cfg.cell_type_map:
        ctm = read_cell_type_map(resolve(cfg.cell_type_map) if root is None else Path(root) / cfg.cell_type_map,
                                 cfg.species)
    else:
        ctm = shared_label_map(adatas)
    counts = pd.DataFrame({
        s: {"cells": a.n_obs, "genes measured": a.n_vars, "cell types": a.obs["cell_type"].nunique(),
            **{f"genes with {k} embedding": int(len(embeddings[k][s].match(a.var_names).matched)) for k in embeddings},
            "genes used by the macrogene models (HVGs)": hvg[s].n_vars,
            "one-to-one orthologs (through human, measured)": len(pairs),
            "one-to-one ortholog HVGs used by the baselines": orth[:, genes].n_vars}
        for s, a in adatas.items()}).T
    return FarTask(task=task, cell_type_map=ctm, one2one=pairs, gene_counts=counts, config=cfg)


# --------------------------------------------------------------------------------- scoring
def centroid_matching(emb: np.ndarray, labels: Sequence[str], species: Sequence[str], mapping_ab: Mapping,
                      mapping_ba: Mapping, *, pair: tuple[str, str], min_cells: int = 5) -> tuple[float, pd.DataFrame]:
    """Unify's tree claim, scored through the map: for every cell type with a counterpart, is the
    nearest centroid of the other species (cosine) one of its matches? Fraction over both directions.

    Returns (score, table: species, cell_type, nearest, right)."""
    from scprior.tasks.integration.metrics import _cosine_distances, celltype_centroids

    cents = celltype_centroids(emb, labels, species, min_cells=min_cells)
    a, b = pair
    rows = []
    for s, t, m in ((a, b, mapping_ab), (b, a, mapping_ba)):
        cs, ct = cents.loc[s], cents.loc[t]
        d = _cosine_distances(cs.to_numpy(), ct.to_numpy())
        for i, typ in enumerate(cs.index):
            targets = set(m.get(typ, ())) & set(ct.index)
            if not targets:
                continue
            nearest = ct.index[int(d[i].argmin())]
            rows.append({"species": s, "cell_type": typ, "nearest": nearest, "right": nearest in targets})
    if not rows:
        raise ScpriorInputError("No matched cell type has enough cells in both species for the centroid score.")
    table = pd.DataFrame(rows)
    return float(table["right"].mean()), table


def evaluate_far_seed(obs: pd.DataFrame, runs: Mapping[str, Any], ctm: CellTypeMap, *, seed: int,
                      pair: tuple[str, str], min_cells: int = 5) -> tuple[pd.DataFrame, dict]:
    """Score every run of one seed: SATURN-protocol transfer both ways (target labels unseen and
    SATURN's both-species-labels setting), dummy, ceiling, within-species kNN, centroid matching.

    Returns (one row per method, per-cell correctness ``{(method, direction): bool array}`` of the
    unseen setting for the bootstrap)."""
    from scprior.tasks.integration.metrics import saturn_label_transfer, within_species_knn

    labels = obs["cell_type"].astype(str).to_numpy()
    species = obs["species"].astype(str).to_numpy()
    a, b = pair
    rows, correct = [], {}
    for m, run in runs.items():
        row: dict[str, Any] = {"seed": seed, "method": m, "seconds": run.seconds}
        for s, t in ((a, b), (b, a)):
            d = f"{s}->{t}"
            for suffix, emb in (("", run.transfer_embedding(d)), ("_both", run.embedding)):
                r = saturn_label_transfer(emb, labels, species, source=s, target=t, seed=seed,
                                          cell_type_map=ctm.get(s, t), return_correct=True)
                row[f"transfer_acc{suffix}[{d}]"] = r["accuracy"]
                row[f"transfer_bal_acc{suffix}[{d}]"] = r["balanced_accuracy"]
                if suffix == "":
                    correct[(m, d)] = r["correct"]
                    row[f"transfer_dummy[{d}]"] = r["dummy"]
                    row[f"transfer_ceiling[{d}]"] = r["ceiling"]
                    reachable = set().union(*ctm.get(s, t).values()) if ctm.get(s, t) else set()
                    types = np.unique(labels[species == t])
                    row[f"transfer_bal_ceiling[{d}]"] = float(np.isin(types, list(reachable)).mean())
                    row[f"transfer_best_constant[{d}]"] = best_constant(labels[species == t], ctm.get(s, t),
                                                                         sorted(set(labels[species == s])))
        for s_name, v in within_species_knn(run.embedding, labels, species, k=5, folds=3, seed=seed).items():
            row[f"knn_bal_acc[{s_name}]"] = v
        row["centroid_match"], _ = centroid_matching(run.embedding, labels, species, ctm.get(a, b), ctm.get(b, a),
                                                     pair=pair, min_cells=min_cells)
        rows.append(row)
    return pd.DataFrame(rows), correct


def best_constant(truth: Sequence[str], mapping: Mapping[str, frozenset[str]], source_types: Sequence[str]) -> float:
    """The balanced accuracy of the best *constant* prediction: every target cell called the same
    source type. With one-to-many matches (five fly enterocyte types <-> mouse ``Enterocyte``) a
    constant guess scores well above the prior-class dummy, so a model must beat this too."""
    truth = np.asarray(truth).astype(str)
    types = np.unique(truth)
    best = 0.0
    for src in source_types:
        hits = set(mapping.get(src, ()))
        best = max(best, float(np.mean([t in hits for t in types])))
    return best


def bootstrap_interval(correct_by_seed: Sequence[np.ndarray], truth: np.ndarray | None = None, *, n_boot: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean over seeds of a per-cell score and its bootstrap interval over target cells (the
    same resampled cells for every seed). With ``truth`` the score is balanced accuracy (mean
    recall over true types), else accuracy. Returns (estimate, low, high)."""
    ok = np.vstack([np.asarray(c, dtype=float) for c in correct_by_seed])  # seeds x cells
    rng = np.random.default_rng(seed)
    n = ok.shape[1]

    def score(idx: np.ndarray) -> float:
        if truth is None:
            return float(ok[:, idx].mean())
        tt = truth[idx]
        return float(np.mean([ok[:, idx][:, tt == u].mean() for u in np.unique(tt)]))

    est = score(np.arange(n))
    boots = [score(rng.integers(0, n, n)) for _ in range(n_boot)]
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return est, float(lo), float(hi)


def scarce_ortholog_verdict(summary: pd.DataFrame, intervals: pd.DataFrame, *, models: Sequence[str],
                            baselines: Sequence[str], directions: Sequence[str], n_one2one: int,
                            labels: Mapping[str, str] | None = None,
                            records: pd.DataFrame | None = None) -> list[str]:
    """The question of notebook 01b, answered from the numbers: does the best gene-embedding model
    beat the best one-to-one-ortholog baseline on transfer balanced accuracy (target labels unseen)?
    "Clearly" only when its bootstrap interval lies above the baseline's estimate and (given the
    per-seed ``records``) its worst seed beats the baseline's best seed; each line also compares
    with the best constant prediction and the ceiling."""
    lab = labels or {}
    lines = []
    for d in directions:
        col = f"transfer_bal_acc[{d}]"
        mods = [m for m in models if m in summary.index]
        bases = [m for m in baselines if m in summary.index]
        if not mods or not bases:
            continue
        best_m = max(mods, key=lambda m: summary.loc[m, col])
        best_b = max(bases, key=lambda m: summary.loc[m, col])
        vm, vb = summary.loc[best_m, col], summary.loc[best_b, col]
        lo = intervals.loc[(best_m, d), "bal_low"]
        hi_b = intervals.loc[(best_b, d), "bal_high"]
        seeds_agree = True
        if records is not None:
            worst = records.loc[records["method"] == best_m, col].min()
            best_seed_b = records.loc[records["method"] == best_b, col].max()
            seeds_agree = bool(worst > best_seed_b)
        if vm > vb and lo > vb and seeds_agree:
            word = "clearly beats"
        elif vm > vb and lo > vb:
            word = "beats on average (the seeds disagree: its worst seed is below the baseline's best)"
        elif vm > vb:
            word = "beats, within the uncertainty,"
        elif vm == vb:
            word = "ties"
        else:
            word = "loses to"
        const = float(intervals.loc[(best_m, d), "best_constant"])
        ceiling = float(intervals.loc[(best_m, d), "bal_ceiling"])
        above = [lab.get(m, m) for m in [*mods, *bases] if intervals.loc[(m, d), "bal_low"] > const]
        lines.append(f"- **{d}**: the best gene-embedding model, {lab.get(best_m, best_m)} (balanced accuracy "
                     f"{vm:.3f}, 95% bootstrap interval {lo:.3f}-{intervals.loc[(best_m, d), 'bal_high']:.3f}), "
                     f"{word} the best one-to-one-ortholog baseline, {lab.get(best_b, best_b)} ({vb:.3f}, "
                     f"interval {intervals.loc[(best_b, d), 'bal_low']:.3f}-{hi_b:.3f}). The ceiling is {ceiling:.3f}; "
                     f"calling every cell one type reaches {const:.3f}, and "
                     + (f"only {', '.join(above)} lie clearly above that." if above else
                        "no method lies clearly above that: none transfers labels here."))
    knn = [c for c in summary.columns if c.startswith("knn_bal_acc[")]
    mods = [m for m in models if m in summary.index]
    bases = [m for m in baselines if m in summary.index]
    if knn and mods and bases:
        mean_knn = summary[knn].mean(axis=1)
        bm, bb = max(mods, key=mean_knn.get), max(bases, key=mean_knn.get)
        lines.append(f"- Within each species (kNN balanced accuracy, mean over species), the best gene-embedding "
                     f"model, {lab.get(bm, bm)}, keeps {mean_knn[bm]:.3f} against {mean_knn[bb]:.3f} for the best "
                     f"baseline, {lab.get(bb, bb)}: " + ("the embeddings keep more cell-type structure than the "
                     "one-to-one genes, without aligning the species." if mean_knn[bm] > mean_knn[bb] else
                     "the one-to-one genes keep as much cell-type structure."))
    lines.append(f"- The baselines see {n_one2one} one-to-one orthologs through human; the numbers rest on few "
                 "cells per type (about ten), so the intervals are wide.")
    return lines


def interval_table(records: pd.DataFrame, correct: Mapping[int, Mapping[tuple[str, str], np.ndarray]],
                   obs: pd.DataFrame, *, directions: Sequence[str], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (method, direction): accuracy and balanced accuracy over seeds with 95% bootstrap
    intervals over the target cells (:func:`bootstrap_interval`), the dummy and the ceiling."""
    species = obs["species"].astype(str).to_numpy()
    labels = obs["cell_type"].astype(str).to_numpy()
    rows = []
    for m in dict.fromkeys(records["method"]):
        for d in directions:
            target = d.split("->")[1]
            truth = labels[species == target]
            per = [correct[s][(m, d)] for s in sorted(correct) if (m, d) in correct[s]]
            acc, acc_lo, acc_hi = bootstrap_interval(per, n_boot=n_boot, seed=seed)
            bal, bal_lo, bal_hi = bootstrap_interval(per, truth, n_boot=n_boot, seed=seed)
            r = records[records["method"] == m]
            rows.append({"method": m, "direction": d, "acc": acc, "acc_low": acc_lo, "acc_high": acc_hi,
                         "bal": bal, "bal_low": bal_lo, "bal_high": bal_hi,
                         "dummy": float(r[f"transfer_dummy[{d}]"].mean()),
                         "ceiling": float(r[f"transfer_ceiling[{d}]"].mean()),
                         "bal_ceiling": float(r[f"transfer_bal_ceiling[{d}]"].mean()),
                         "best_constant": float(r[f"transfer_best_constant[{d}]"].mean()), "n_seeds": len(per),
                         "n_target_cells": int(len(truth))})
    return pd.DataFrame(rows).set_index(["method", "direction"])


def metrics_json(records: pd.DataFrame, intervals: pd.DataFrame, *, dataset: str, seeds: Sequence[int],
                 gene_counts: pd.DataFrame, n_one2one: int, map_source: str, verdict: Sequence[str]) -> dict:
    """``metrics/integration_far.json``: every method's transfer scores (mean over seeds, per seed,
    bootstrap interval), centroid matching, within-species kNN, and the gene counts."""
    from scprior.tasks.integration.metrics import TRANSFER_PROTOCOL

    methods: dict[str, Any] = {}
    for m, r in records.groupby("method", sort=False):
        entry: dict[str, Any] = {"centroid_match": float(r["centroid_match"].mean()),
                                 "centroid_match_per_seed": r["centroid_match"].round(4).tolist(),
                                 "seconds_mean": float(r["seconds"].mean())}
        for c in [c for c in r.columns if c.startswith("knn_bal_acc[")]:
            entry[c] = float(r[c].mean())
        entry["transfer"] = {}
        for (_, d), iv in intervals.loc[[m]].iterrows():
            entry["transfer"][d] = {
                "accuracy": float(iv["acc"]), "accuracy_interval": [float(iv["acc_low"]), float(iv["acc_high"])],
                "balanced_accuracy": float(iv["bal"]),
                "balanced_accuracy_interval": [float(iv["bal_low"]), float(iv["bal_high"])],
                "balanced_accuracy_per_seed": r[f"transfer_bal_acc[{d}]"].round(4).tolist(),
                "balanced_accuracy_both_species_labels": float(r[f"transfer_bal_acc_both[{d}]"].mean()),
                "dummy": float(iv["dummy"]), "ceiling": float(iv["ceiling"]),
                "balanced_accuracy_ceiling": float(iv["bal_ceiling"]),
                "best_constant_balanced_accuracy": float(iv["best_constant"])}
        methods[str(m)] = entry
    return {"dataset": dataset, "simulated": False, "seeds": [int(s) for s in seeds],
            "transfer_protocol": TRANSFER_PROTOCOL + "; target labels unseen in training",
            "cell_type_map": map_source, "n_one2one_orthologs": int(n_one2one),
            "genes": {str(k): {str(c): int(v) for c, v in row.items()} for k, row in gene_counts.iterrows()},
            "verdict": list(verdict), "methods": methods}
