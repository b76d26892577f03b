"""The SIMULATED sci-Plex-format drug screen: real base cells, real sci-Plex3 signatures, real compounds.

No sci-Plex cells are reachable offline, so the demo is simulated, in chemCPA's sci-Plex3 layout
(:mod:`scprior.data.drug_format`):

- **base cells** are real Baron human pancreas counts; three cell types stand in for the three
  sci-Plex3 cell lines (``BASE_CELL_TYPES``). Each simulated cell is a real cell's counts, thinned
  binomially (so re-drawn cells differ), plus drug-induced counts;
- **drug effects** are the real sci-Plex3 ``up`` signatures of each drug in each cell line
  (sigrecon's files, Ensembl ids mapped to symbols through org.Hs.eg.db): the signature genes rise
  by a log fold change that decays with the gene's rank in the signature, scaled by a **Hill dose
  response** ``d^h / (d^h + EC50^h)`` whose potency (EC50) and slope (h) differ by drug;
- **drugs and SMILES** are the real compounds of chemCPA's sci-Plex3 table, matched by name to the
  signature files (:func:`match_drug_names` reports how each matched and what did not). Drugs of one
  class (the HDAC inhibitors) share much of their real signatures;
- sci-Plex3's doses 10, 100, 1000, 10000 nM plus vehicle (DMSO), ``dose_val = dose / 10000`` as in
  CPA's sci-Plex files.

Splits (obs columns, CPA's ``train``/``test``/``ood``): ``split_ood_dose`` holds one dose level of
every drug out (GeneCompass's OOD-dose task), ``split_held_out_drug`` holds every dose of a few drugs
out (chemCPA's unseen-drug task). ``uns['drug_simulation']`` keeps the true EC50s and Hill slopes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.drug_format import DE_KEY, DrugLayout, add_pert_categories, rank_genes_groups_cov
from scprior.data.drug_rda import ensembl_to_symbol, read_signatures
from scprior.errors import ScpriorInputError

CELL_LINES = ("A549", "K562", "MCF7")
#: Baron pancreas cell type whose real counts stand in for each sci-Plex3 cell line
BASE_CELL_TYPES = {"A549": "pancreatic ductal cell", "K562": "type B pancreatic cell", "MCF7": "pancreatic A cell"}
SALTS = {"hcl", "2hcl", "dihydrochloride", "hydrochloride", "mesylate", "maleate", "tosylate", "citrate",
         "sodium", "phosphate", "sulfate", "acetate", "hbr", "dimaleate"}
VEHICLE = "control"
LAYOUT = DrugLayout(perturbation_key="condition", dose_key="dose_val", covariate_keys=("cell_type",),
                    split_keys=("split_ood_dose", "split_held_out_drug"))


@dataclass(frozen=True)
class DrugSimConfig:
    """Settings of the simulated screen (``params.yaml`` section ``drug_sim``)."""

    seed: int = 0
    doses_nm: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    ood_dose_nm: float = 1000.0
    held_out_drugs: tuple[str, ...] = ("Belinostat", "Tanespimycin", "Trametinib")
    n_drugs: int = 0                   # 0: every matched drug
    cells_per_condition: int = 15      # per cell line x drug x dose
    vehicle_cells: int = 200           # per cell line
    n_genes: int = 600                 # signature genes first, then the most variable others
    max_lfc: float = 2.0               # log fold change of a drug's top signature gene at full effect
    ec50_range_nm: tuple[float, float] = (30.0, 3000.0)
    hill_range: tuple[float, float] = (0.8, 2.5)
    thinning: float = 0.8              # binomial thinning of each re-drawn base cell
    min_fraction: float = 2e-4         # floor of a responding gene's expected share of the library
    test_fraction: float = 0.1         # in-distribution test cells (CPA's ``test``)
    max_signature: int = 30            # top genes of each real signature used

    def __post_init__(self) -> None:
        if self.ood_dose_nm not in self.doses_nm:
            raise ScpriorInputError(f"ood_dose_nm {self.ood_dose_nm} must be one of doses_nm {self.doses_nm}.")
        if not 0 < self.thinning <= 1:
            raise ScpriorInputError(f"thinning must be in (0, 1], got {self.thinning}.")
        if self.cells_per_condition < 2 or self.vehicle_cells < 10:
            raise ScpriorInputError("cells_per_condition must be >= 2 and vehicle_cells >= 10.")

    @classmethod
    def from_dict(cls, spec: dict | None) -> DrugSimConfig:
        """Build from a params mapping (lists become tuples); unknown keys are an error."""
        spec = dict(spec or {})
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise ScpriorInputError(f"Unknown drug_sim keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}.")
        for key in ("doses_nm", "held_out_drugs", "ec50_range_nm", "hill_range"):
            if key in spec:
                spec[key] = tuple(spec[key])
        return cls(**spec)


def hill(dose: np.ndarray, ec50: float, slope: float) -> np.ndarray:
    """Hill dose response ``d^h / (d^h + EC50^h)`` (0 at dose 0, 0.5 at EC50, -> 1)."""
    from scipy.special import expit

    dose = np.asarray(dose, dtype=float)
    return np.where(dose > 0, expit(slope * (np.log(np.maximum(dose, 1e-300)) - np.log(ec50))), 0.0)


# ----------------------------------------------------------------------------------- names
def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[\s()\-,/]+", name.lower()) if len(t) >= 3 and t not in SALTS]


def match_drug_names(signature_names: list[str], compound_names: list[str]) -> pd.DataFrame:
    """Match signature drug names (e.g. ``Panobinostat (LBH589)``) to compound names (``Panobinostat``).

    Tried in order: ``exact``; ``normalised`` (parenthesised aliases and salt words dropped, case and
    punctuation ignored); ``token`` (one word of the name, e.g. ``JQ1`` of ``g(+)-JQ1``, equals a
    compound name). Returns one row per signature name: ``signature_name``, ``compound``
    (``""`` if none), ``how`` (``exact``/``normalised``/``token``/``unmatched``).
    """
    by_norm = {_norm(c): c for c in compound_names}
    rows = []
    for name in signature_names:
        if name in compound_names:
            rows.append((name, name, "exact"))
            continue
        stripped = re.sub(r"\([^)]*\)", " ", name)
        stripped = " ".join(t for t in stripped.split() if t.lower() not in SALTS)
        if _norm(stripped) in by_norm:
            rows.append((name, by_norm[_norm(stripped)], "normalised"))
            continue
        hits = [by_norm[_norm(t)] for t in _tokens(name) if _norm(t) in by_norm]
        rows.append((name, hits[0], "token") if hits else (name, "", "unmatched"))
    return pd.DataFrame(rows, columns=["signature_name", "compound", "how"])


def read_compounds(path: str | Path) -> pd.DataFrame:
    """chemCPA's sci-Plex3 drug table (no header): ``name``, ``smiles``, ``pathway``."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} does not exist: run `python -m scprior.data.fetch` first.")
    table = pd.read_csv(path, header=None, names=["name", "smiles", "pathway"], dtype=str).fillna("")
    if table["smiles"].eq("").any():
        raise ScpriorInputError(f"{path}: rows without SMILES: {table.loc[table['smiles'].eq(''), 'name'].tolist()[:5]}.")
    return table


# ----------------------------------------------------------------------------------- simulate
@dataclass
class SimInputs:
    """What the simulator reads: base counts (cells x genes, symbols) and signatures by line."""

    base: ad.AnnData
    signatures: dict[str, dict[str, list[str]]]  # cell line -> compound -> signature symbols (ranked)
    compounds: pd.DataFrame                      # name, smiles, pathway (only the matched drugs)
    matching: pd.DataFrame
    unmatched_compounds: int = 0
    sources: dict = field(default_factory=dict)


def load_inputs(baron_zip: Path, signature_files: dict[str, Path], compounds_csv: Path, org_sqlite: Path) -> SimInputs:
    """Read the real inputs: Baron human counts, the three signature files, the compound table."""
    from scprior.data.baron import read_baron

    base = read_baron(baron_zip, "human")
    ens = ensembl_to_symbol(org_sqlite)
    compounds = read_compounds(compounds_csv)
    raw = {line: read_signatures(path) for line, path in signature_files.items()}
    names = sorted({d for sig in raw.values() for d in sig})
    matching = match_drug_names(names, compounds["name"].tolist())
    to_compound = dict(zip(matching["signature_name"], matching["compound"]))
    signatures: dict[str, dict[str, list[str]]] = {}
    for line, table in raw.items():
        signatures[line] = {}
        for drug, genes in table.items():
            if not to_compound.get(drug):
                continue
            symbols = [ens[g.split(".")[0]] for g in genes if g.split(".")[0] in ens]
            signatures[line][to_compound[drug]] = list(dict.fromkeys(symbols))
    matched = sorted({c for c in to_compound.values() if c})
    return SimInputs(base=base, signatures=signatures,
                     compounds=compounds.set_index("name").loc[matched].reset_index(), matching=matching,
                     unmatched_compounds=len(compounds) - len(matched),
                     sources={"signature_files": {k: str(v) for k, v in signature_files.items()},
                              "compounds": str(compounds_csv)})


def simulate(inputs: SimInputs, config: DrugSimConfig | None = None) -> ad.AnnData:
    """The simulated screen as a CPA/chemCPA-layout AnnData (raw counts in ``X`` and ``layers['counts']``)."""
    cfg = config or DrugSimConfig()
    rng = np.random.default_rng(cfg.seed)
    base = inputs.base
    base_counts = sp.csr_matrix(base.layers["counts"] if "counts" in base.layers else base.X)
    drugs = sorted(inputs.compounds["name"])
    missing_held = [d for d in cfg.held_out_drugs if d not in drugs]
    if missing_held:
        raise ScpriorInputError(f"held_out_drugs {missing_held} are not among the matched drugs {drugs}.")
    if cfg.n_drugs:
        keep = list(cfg.held_out_drugs) + [d for d in drugs if d not in cfg.held_out_drugs]
        drugs = sorted(keep[: max(cfg.n_drugs, len(cfg.held_out_drugs))])
    genes_in = pd.Index(base.var_names.astype(str))
    sig_genes: list[str] = []
    for line in CELL_LINES:
        for drug in drugs:
            sig_genes += [g for g in inputs.signatures.get(line, {}).get(drug, [])[: cfg.max_signature] if g in genes_in]
    sig_genes = list(dict.fromkeys(sig_genes))
    # the rest of the panel: most variable (log-normalised) other genes of the base cells
    logx = base.X if not sp.issparse(base.X) else base.X.tocsc()
    mean = np.asarray(logx.mean(0)).ravel()
    sq = np.asarray(logx.multiply(logx).mean(0)).ravel() if sp.issparse(logx) else (np.asarray(logx) ** 2).mean(0)
    var = sq - mean**2
    order = [genes_in[i] for i in np.argsort(-var, kind="stable") if genes_in[i] not in set(sig_genes)]
    panel = (sig_genes + order)[: max(cfg.n_genes, 1)]
    if len(sig_genes) > cfg.n_genes:
        panel = sig_genes[: cfg.n_genes]
    col = genes_in.get_indexer(panel)
    counts_panel = base_counts[:, col].toarray()
    lib_all = np.asarray(base_counts.sum(1)).ravel()

    lo, hi = np.log(cfg.ec50_range_nm[0]), np.log(cfg.ec50_range_nm[1])
    params = pd.DataFrame({"drug": drugs, "ec50_nm": np.exp(rng.uniform(lo, hi, len(drugs))),
                           "hill": rng.uniform(*cfg.hill_range, len(drugs)),
                           "strength": rng.uniform(0.7, 1.3, len(drugs))}).set_index("drug")
    gene_pos = {g: i for i, g in enumerate(panel)}
    blocks, obs_rows = [], []
    for line in CELL_LINES:
        kind = BASE_CELL_TYPES[line]
        pool = np.flatnonzero(base.obs["cell_type"].astype(str).to_numpy() == kind)
        if len(pool) < 10:
            raise ScpriorInputError(f"Base cell type {kind!r} has {len(pool)} cells; need >= 10.")
        # expected share of the library; a floor so signature genes silent in the base cells can respond
        type_mean = np.maximum(counts_panel[pool].sum(0) / lib_all[pool].sum(), cfg.min_fraction)
        conditions = [(VEHICLE, 0.0, cfg.vehicle_cells)] + [(d, dose, cfg.cells_per_condition)
                                                           for d in drugs for dose in cfg.doses_nm]
        for drug, dose, n in conditions:
            pick = rng.choice(pool, size=n, replace=True)
            cells = rng.binomial(counts_panel[pick].astype(np.int64), cfg.thinning).astype(np.float64)
            if drug != VEHICLE:
                lfc = np.zeros(len(panel))
                sig = [g for g in inputs.signatures.get(line, {}).get(drug, [])[: cfg.max_signature] if g in gene_pos]
                for rank, g in enumerate(sig):
                    lfc[gene_pos[g]] = cfg.max_lfc * params.at[drug, "strength"] * (1.0 - 0.5 * rank / max(len(sig), 1))
                effect = hill(np.array([dose]), params.at[drug, "ec50_nm"], params.at[drug, "hill"])[0]
                fold = np.exp(lfc * effect) - 1.0
                lam = (lib_all[pick] * cfg.thinning)[:, None] * type_mean[None, :] * fold[None, :]
                cells += rng.poisson(np.maximum(lam, 0.0))
            blocks.append(cells.astype(np.float32))
            obs_rows += [(line, drug, dose, int(drug == VEHICLE), kind, int(b)) for b in pick]
    X = sp.csr_matrix(np.vstack(blocks))
    obs = pd.DataFrame(obs_rows, columns=["cell_type", "condition", "dose", "control", "base_cell_type", "base_cell"])
    obs.index = [f"sim{i}" for i in range(len(obs))]
    obs["product_name"] = obs["condition"]
    obs["dose_val"] = obs["dose"] / 10000.0
    smiles = dict(zip(inputs.compounds["name"], inputs.compounds["smiles"]))
    pathway = dict(zip(inputs.compounds["name"], inputs.compounds["pathway"]))
    obs["SMILES"] = [smiles.get(d, "") for d in obs["condition"]]
    obs["pathway"] = [pathway.get(d, "vehicle") for d in obs["condition"]]
    _add_splits(obs, cfg, rng)
    var = pd.DataFrame({"gene_name": panel, "is_signature_gene": [g in set(sig_genes) for g in panel]}, index=panel)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.layers["counts"] = X.copy()
    for c in ("cell_type", "condition", "product_name", "SMILES", "pathway", "base_cell_type",
              "split_ood_dose", "split_held_out_drug"):
        adata.obs[c] = adata.obs[c].astype("category")
    add_pert_categories(adata, LAYOUT)
    adata.uns[DE_KEY] = rank_genes_groups_cov(adata, LAYOUT)
    adata.uns["drug_layout"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(LAYOUT).items()}
    adata.uns["drug_simulation"] = {
        "params": params.reset_index().to_dict(orient="list"),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "name_matching": inputs.matching.to_dict(orient="list"),
        "unmatched_compounds": int(inputs.unmatched_compounds),
        "base_cell_types": dict(BASE_CELL_TYPES),
    }
    adata.uns["scprior"] = {"dataset_id": "drug_sciplex_simulated", "real": False,
                            "title": "SIMULATED sci-Plex-format screen (real base cells, real sci-Plex3 signatures)",
                            **inputs.sources}
    return adata


def _add_splits(obs: pd.DataFrame, cfg: DrugSimConfig, rng: np.random.Generator) -> None:
    treated = obs["control"].to_numpy() == 0
    test = rng.random(len(obs)) < cfg.test_fraction
    ood_dose = treated & np.isclose(obs["dose"].to_numpy(), cfg.ood_dose_nm)
    obs["split_ood_dose"] = np.where(ood_dose, "ood", np.where(test, "test", "train"))
    held = treated & obs["condition"].isin(cfg.held_out_drugs).to_numpy()
    obs["split_held_out_drug"] = np.where(held, "ood", np.where(test, "test", "train"))
