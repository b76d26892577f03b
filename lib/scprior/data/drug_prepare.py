"""DVC stage ``drug_data``: the real glioblastoma drug experiment and the SIMULATED sci-Plex-format
screen, both written in CPA's AnnData layout (:mod:`scprior.data.drug_format`).

    python -m scprior.data.drug_prepare --raw data/raw --out data/processed

Real: Zhao et al. 2021 patient glioblastoma slices (lemur's example data): DMSO vs panobinostat
0.2 uM, 5 patients. ``condition`` is ``DMSO`` or ``panobinostat``, ``dose_val`` 0 or 0.2 (uM), the
covariate is ``patient``; split columns ``split_patient_<id>`` hold that patient's panobinostat
cells out (``ood``): CPA's unseen covariate-combination task. Genes: Ensembl ids mapped to symbols.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scprior.config import section
from scprior.data.drug_format import (
    DE_KEY,
    DrugLayout,
    add_pert_categories,
    rank_genes_groups_cov,
    validate_drug_anndata,
)
from scprior.data.drug_rda import ensembl_to_symbol, read_sce
from scprior.data.drug_sim import CELL_LINES, DrugSimConfig, load_inputs, simulate
from scprior.paths import project_root
from scprior.safe_io import atomic_path

DRUG_DATASETS = {"glioblastoma": "drug_glioblastoma.h5ad", "sciplex_simulated": "drug_sciplex_simulated.h5ad"}
RAW_FILES = {
    "glioblastoma": "drug/glioblastoma_example_data.rda",
    "compounds": "drug/sciplex3_drugs_smiles_chemCPA.csv",
    "org": "knowledge/org.Hs.eg.sqlite",
    "baron": "baron/came_sample_data.zip",
    **{f"sciplex_{line.lower()}": f"drug/sciplex.{line.lower()}.rda" for line in CELL_LINES},
}
GLIO_CITATION = "Zhao et al. 2021, Nat Commun 12:4950 (GEO GSE148842); example data of const-ae/lemur (MIT)"


def glioblastoma_layout(patients) -> DrugLayout:
    """The layout of the glioblastoma file: covariate ``patient``, one split column per patient."""
    return DrugLayout(covariate_keys=("patient",), split_keys=tuple(f"split_patient_{p}" for p in patients))


def build_glioblastoma(rda: Path, org_sqlite: Path, *, test_fraction: float = 0.1, seed: int = 0) -> ad.AnnData:
    """The real glioblastoma experiment in CPA's layout (raw counts, symbols, one split per patient)."""
    raw = read_sce(rda, assay="counts")
    ens = ensembl_to_symbol(org_sqlite)
    ids = [g.split(".")[0] for g in raw.var_names]
    symbols = [ens.get(g, g) for g in ids]
    var = pd.DataFrame({"gene_name": symbols, "ensembl_id": ids, "mapped": [g in ens for g in ids]})
    var.index = pd.Index(symbols).where(~pd.Index(symbols).duplicated(keep="first"), pd.Index(ids))
    cond = raw.obs["condition"].astype(str)
    if set(cond) != {"ctrl", "panobinostat"}:
        raise ValueError(f"{rda}: expected conditions ctrl / panobinostat, found {sorted(set(cond))}")
    treated = (cond == "panobinostat").to_numpy()
    obs = pd.DataFrame({
        "condition": np.where(treated, "panobinostat", "DMSO"),
        "dose_val": np.where(treated, 0.2, 0.0),
        "dose_unit": "uM",
        "control": (~treated).astype(int),
        "patient": raw.obs["patient_id"].astype(str).to_numpy(),
        "sample_id": raw.obs["sample_id"].astype(str).to_numpy(),
        "treatment": raw.obs["treatment"].astype(str).to_numpy(),
    })
    obs.index = (obs["sample_id"] + "_" + raw.obs_names.astype(str)).to_numpy()
    obs.index = pd.Index(obs.index).where(~pd.Index(obs.index).duplicated(), [f"{i}_{k}" for k, i in enumerate(obs.index)])
    patients = sorted(obs["patient"].unique())
    rng = np.random.default_rng(seed)
    test = rng.random(len(obs)) < test_fraction
    for p in patients:
        held = treated & (obs["patient"].to_numpy() == p)
        obs[f"split_patient_{p}"] = np.where(held, "ood", np.where(test, "test", "train"))
    adata = ad.AnnData(X=raw.X.copy(), obs=obs, var=var)
    adata.layers["counts"] = adata.X.copy()
    for c in ("condition", "patient", "sample_id", "treatment", *[f"split_patient_{p}" for p in patients]):
        adata.obs[c] = adata.obs[c].astype("category")
    layout = glioblastoma_layout(patients)
    add_pert_categories(adata, layout)
    adata.uns[DE_KEY] = rank_genes_groups_cov(adata, layout)
    adata.uns["drug_layout"] = {k: list(v) if isinstance(v, tuple) else v for k, v in layout.__dict__.items()}
    adata.uns["scprior"] = {"dataset_id": "drug_glioblastoma", "real": True, "citation": GLIO_CITATION,
                            "title": "Glioblastoma slices, DMSO vs panobinostat 0.2 uM (Zhao 2021)",
                            "source": {"file": str(rda)}, "unmapped_genes": int((~var["mapped"]).sum())}
    validate_drug_anndata(adata, layout, what="glioblastoma (built)")
    return adata


def build_simulated(raw_dir: Path, config: DrugSimConfig) -> ad.AnnData:
    """The SIMULATED screen from the pinned raw files (see :mod:`scprior.data.drug_sim`)."""
    inputs = load_inputs(raw_dir / RAW_FILES["baron"],
                         {line: raw_dir / RAW_FILES[f"sciplex_{line.lower()}"] for line in CELL_LINES},
                         raw_dir / RAW_FILES["compounds"], raw_dir / RAW_FILES["org"])
    return simulate(inputs, config)


def write_h5ad(adata: ad.AnnData, path: Path) -> Path:
    """Write ``adata`` atomically (gzip)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    return path


def read_drug_dataset(name: str, processed_dir: str | Path = "data/processed") -> ad.AnnData:
    """One processed drug dataset (``glioblastoma`` or ``sciplex_simulated``), validated."""
    from scprior.data.drug_format import read_drug_anndata
    from scprior.errors import ScpriorInputError
    from scprior.paths import resolve

    if name not in DRUG_DATASETS:
        raise ScpriorInputError(f"Unknown drug dataset {name!r}; use one of {sorted(DRUG_DATASETS)}.")
    path = resolve(processed_dir) / DRUG_DATASETS[name]
    if not path.is_file():
        raise ScpriorInputError(f"{path} does not exist: run `dvc repro drug_data` first.")
    adata = ad.read_h5ad(path)
    layout = DrugLayout.from_dict(dict(adata.uns.get("drug_layout", {})))
    del adata
    return read_drug_anndata(path, layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the drug datasets (real glioblastoma, SIMULATED sci-Plex).")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/processed")
    args = parser.parse_args(argv)
    root = project_root()
    raw, out = root / args.raw, root / args.out
    cfg = DrugSimConfig.from_dict(section("drug_sim", root / "params.yaml"))
    glio = build_glioblastoma(raw / RAW_FILES["glioblastoma"], raw / RAW_FILES["org"], seed=cfg.seed)
    write_h5ad(glio, out / DRUG_DATASETS["glioblastoma"])
    sim = build_simulated(raw, cfg)
    write_h5ad(sim, out / DRUG_DATASETS["sciplex_simulated"])
    print(f"glioblastoma: {glio.n_obs} x {glio.n_vars}; SIMULATED sci-Plex: {sim.n_obs} x {sim.n_vars}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
