"""Small drug-screen AnnData written in code, in CPA's layout (no committed binaries)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scprior.data.drug_format import DE_KEY, DrugLayout, add_pert_categories, rank_genes_groups_cov

#: real sci-Plex3 compounds (chemCPA's table): two HDAC inhibitors and an HSP90 inhibitor
SMILES = {
    "Belinostat": "O=C(/C=C/c1cccc(S(=O)(=O)Nc2ccccc2)c1)NO",
    "Panobinostat": "Cc1[nH]c2ccccc2c1CCNCc1ccc(/C=C/C(=O)NO)cc1",
    "Tanespimycin": "C=CCNC1=C2CC(C)CC(OC)C(O)C(C)/C=C(\\C)C(OC(N)=O)C(OC)/C=C\\C=C(/C)C(=O)NC(=CC1=O)C2=O",
}
DOSES = (0.001, 0.01, 0.1, 1.0)
EC50 = {"Belinostat": 0.01, "Panobinostat": 0.05, "Tanespimycin": 0.2}


def hill(dose: float, ec50: float, slope: float = 1.5) -> float:
    return 0.0 if dose <= 0 else float(dose**slope / (dose**slope + ec50**slope))


def make_cpa_adata(*, seed: int = 0, n_genes: int = 30, cells: int = 20, vehicle: int = 60,
                   lfc: float = 2.0, string_doses: bool = True) -> ad.AnnData:
    """Two cell types x three drugs x four doses (+ vehicle): NB counts whose drug genes rise along
    a Hill curve. CPA's obs columns (``condition``, ``dose_val``, ``cell_type``, ``control``,
    ``cov_drug_dose_name``, ``split``, chemCPA's ``SMILES``) and ``uns['rank_genes_groups_cov']``.
    ``dose_val`` is stored as strings like CPA's files when ``string_doses``."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(n_genes)]
    base = {ct: rng.gamma(2.0, 2.0, n_genes) for ct in ("A549", "K562")}
    targets = {d: np.arange(k * 5, k * 5 + 5) for k, d in enumerate(SMILES)}
    rows, blocks = [], []
    for ct, mean in base.items():
        conds = [("control", 0.0, vehicle)] + [(d, dose, cells) for d in SMILES for dose in DOSES]
        for drug, dose, n in conds:
            mu = mean.copy()
            if drug != "control":
                mu[targets[drug]] *= np.exp(lfc * hill(dose, EC50[drug]))
            lib = rng.uniform(0.7, 1.3, n)[:, None]
            blocks.append(rng.negative_binomial(5, 5 / (5 + mu[None, :] * lib)))
            rows += [(drug, dose, ct, int(drug == "control"))] * n
    obs = pd.DataFrame(rows, columns=["condition", "dose_val", "cell_type", "control"])
    obs.index = [f"c{i}" for i in range(len(obs))]
    obs["SMILES"] = obs["condition"].map(SMILES).fillna("")
    rng2 = np.random.default_rng(seed + 1)
    ood = (obs["dose_val"] == 0.1) & (obs["control"] == 0)
    obs["split"] = np.where(ood, "ood", np.where(rng2.random(len(obs)) < 0.1, "test", "train"))
    obs["split_drug"] = np.where((obs["condition"] == "Panobinostat"), "ood", "train")
    if string_doses:
        obs["dose_val"] = obs["dose_val"].map(repr)
    X = sp.csr_matrix(np.vstack(blocks).astype(np.float32))
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
    layout = DrugLayout(split_keys=("split", "split_drug"))
    add_pert_categories(adata, layout)
    adata.uns[DE_KEY] = rank_genes_groups_cov(adata, layout, n_genes=10)
    return adata


LAYOUT = DrugLayout(split_keys=("split", "split_drug"))
