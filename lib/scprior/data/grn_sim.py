"""SIMULATED single cells with an exact GRN: SERGIO (PyPI ``sergio-scsim``, package ``SERGIO``) on
real human genes and real Pathway Commons regulon edges.

Network: ``n_tfs`` regulators with at least ``min_targets`` regulon targets are drawn; the measured
genes are those TFs plus a draw of their targets (``n_genes`` in all); the edges are the regulon's
edges among them, each target keeping at most ``max_regulators`` regulators. SERGIO needs an
acyclic graph, so TF -> TF edges only run forward in a seeded order of the TFs. Interaction
strengths and signs are drawn as SERGIO does (75 % activating, ``K`` in [1, 5] or [-5, -1], Hill
coefficient 2); the master regulators' production rates differ between ``n_cell_types`` cell
types (SERGIO's bins, low/high levels). SERGIO's steady-state stochastic simulation gives clean
expression, to which its technical noise is added (outlier genes, library size, dropout) before
Poisson UMI counts.

The output is an AnnData in the scprior layout (``layers['counts']``, log-normalised ``X``,
``obs['cell_type']``), ``uns['scprior']['real'] = False`` and the exact network in
``uns['grn_edges']`` (``tf``, ``target``, ``k``). SERGIO draws from NumPy's global generator: the
simulation seeds it with ``seed`` and restores nothing else.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scprior.errors import ScpriorInputError

_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9-]*$")


@dataclass(frozen=True)
class SergioConfig:
    """Size, kinetics and technical noise of the SERGIO simulation (``grn_sim`` in params.yaml)."""

    seed: int = 0
    n_tfs: int = 30
    n_genes: int = 300
    min_targets: int = 10
    max_regulators: int = 4
    n_cell_types: int = 5
    cells_per_type: int = 200
    noise_s: float = 1.0           # SERGIO's intrinsic noise amplitude q
    decay: float = 0.8
    hill: float = 2.0
    safety_iter: int = 150
    scale_iter: int = 10
    outlier_prob: float = 0.01     # technical noise (SERGIO's DS6-like settings)
    outlier_mean: float = 0.8
    outlier_scale: float = 1.0
    lib_mean: float = 4.6
    lib_scale: float = 0.4
    dropout_shape: float = 6.5
    dropout_percentile: float = 82.0


def sergio_config(params: dict | None = None) -> SergioConfig:
    """A validated :class:`SergioConfig` from a params.yaml section."""
    params = dict(params or {})
    unknown = set(params) - set(SergioConfig.__dataclass_fields__)
    if unknown:
        raise ScpriorInputError(f"grn_sim has unknown settings {sorted(unknown)}; known: "
                                f"{sorted(SergioConfig.__dataclass_fields__)}.")
    cfg = SergioConfig(**params)
    if cfg.n_tfs < 2 or cfg.n_genes <= cfg.n_tfs or cfg.n_cell_types < 1 or cfg.cells_per_type < 2:
        raise ScpriorInputError(f"grn_sim needs n_tfs >= 2, n_genes > n_tfs, cell types >= 1 and >= 2 cells per type; "
                                f"got {cfg}.")
    return cfg


def sergio_network(regulon: pd.DataFrame, cfg: SergioConfig) -> tuple[list[str], pd.DataFrame]:
    """(genes, edges ``tf``, ``target``, ``k``): an acyclic network from real regulon edges."""
    if not {"tf", "target"} <= set(regulon.columns):
        raise ScpriorInputError(f"The regulon needs columns tf and target (has {list(regulon.columns)}).")
    reg = regulon[["tf", "target"]].astype(str).apply(lambda c: c.str.upper()).drop_duplicates()
    reg = reg[reg["tf"].str.match(_SYMBOL_RE) & reg["target"].str.match(_SYMBOL_RE) & (reg["tf"] != reg["target"])]
    rng = np.random.default_rng(cfg.seed)
    out_deg = reg["tf"].value_counts()
    eligible = sorted(out_deg[out_deg >= cfg.min_targets].index)
    if len(eligible) < cfg.n_tfs:
        raise ScpriorInputError(f"Only {len(eligible)} regulators have >= {cfg.min_targets} targets; "
                                f"lower grn_sim.n_tfs ({cfg.n_tfs}) or min_targets.")
    tfs = list(rng.choice(eligible, size=cfg.n_tfs, replace=False))  # also the DAG order
    order = {t: i for i, t in enumerate(tfs)}
    sub = reg[reg["tf"].isin(order)]
    others = sorted(set(sub["target"]) - set(tfs))
    n_other = min(cfg.n_genes - cfg.n_tfs, len(others))
    targets = set(rng.choice(others, size=n_other, replace=False).tolist())
    genes = sorted(set(tfs) | targets)
    edges = sub[sub["target"].isin(set(genes))]
    tf_tf = edges["target"].isin(order)
    forward = edges["target"].map(order).fillna(np.inf) > edges["tf"].map(order)
    edges = edges[~tf_tf | forward]
    edges = edges.sample(frac=1.0, random_state=int(rng.integers(2**31))).groupby("target").head(cfg.max_regulators)
    # genes that lost every regulator (a TF target cut by the DAG rule stays: it becomes a master regulator)
    keep = set(edges["tf"]) | set(edges["target"]) | set(tfs)
    genes = [g for g in genes if g in keep]
    act = rng.random(len(edges)) < 0.75
    k = np.where(act, rng.uniform(1, 5, len(edges)), rng.uniform(-5, -1, len(edges)))
    edges = edges.assign(k=k).sort_values(["tf", "target"]).reset_index(drop=True)
    return genes, edges


def simulate_sergio(regulon: pd.DataFrame, config: SergioConfig | None = None) -> ad.AnnData:
    """Run SERGIO on a network from ``regulon``; return counts AnnData (see the module docstring)."""
    from SERGIO import sergio
    from SERGIO.GRN._components import Gene, SingleInteraction
    from SERGIO.GRN._grn import GRN
    from SERGIO.MR._profile import mrProfile
    from SERGIO.Noise._noise import splatModel

    from scprior.data.anndata_conventions import standardise

    cfg = config or SergioConfig()
    genes, edges = sergio_network(regulon, cfg)
    np.random.seed(cfg.seed)  # noqa: NPY002 - SERGIO draws from the global generator
    grn = GRN()
    for row in edges.itertuples(index=False):
        grn.add_interaction(SingleInteraction(reg=[Gene(name=row.tf, decay=cfg.decay)],
                                              tar=Gene(name=row.target, decay=cfg.decay), k=float(row.k), n=cfg.hill))
    for g in genes:  # isolated TFs (no kept edge) still get simulated as master regulators
        grn._add_gene(Gene(name=g, decay=cfg.decay))
    grn.setMRs()
    profile = mrProfile(MR_names=grn.get_mrs(), n_types=cfg.n_cell_types)
    profile.build_rnd()
    grn.init(profile, update_half_resp=True)
    sim = sergio(grn)
    sim.simulate(nCells=cfg.cells_per_type, noise_s=cfg.noise_s, safety_iter=cfg.safety_iter, scale_iter=cfg.scale_iter)
    clean = sim.getSimExpr()  # genes x cells, SERGIO's gene order
    expr = clean.to_numpy(dtype=np.float64)
    noise = splatModel()
    expr = noise.outlier_effect(expr, cfg.outlier_prob, cfg.outlier_mean, cfg.outlier_scale)
    expr = noise.lib_size_effect(expr, cfg.lib_mean, cfg.lib_scale)
    expr = expr * noise.dropout_indicator(expr, cfg.dropout_shape, cfg.dropout_percentile)
    counts = noise.convert_to_UMIcounts(expr).astype(np.float32)
    cell_type = [c.rsplit("_cell_", 1)[0].replace("type_", "type ") for c in clean.columns]
    obs = pd.DataFrame({"sergio_bin": cell_type}, index=[f"sim_{c}" for c in clean.columns])
    adata = ad.AnnData(X=counts.T.copy(), obs=obs, var=pd.DataFrame(index=[str(g) for g in clean.index]))
    adata = adata[:, sorted(adata.var_names)].copy()
    keep = np.asarray(adata.X.sum(axis=1)).ravel() > 0
    adata = adata[keep].copy()
    standardise(adata, species="human", cell_type="sergio_bin", batch=None,
                provenance={"dataset_id": "sergio_simulated", "real": False,
                            "title": "SIMULATED SERGIO cells on real regulon edges",
                            "simulator": "sergio-scsim==1.9.3 (SERGIO v2, steady state)",
                            "config": {k: v for k, v in asdict(cfg).items()}})
    adata.uns["grn_edges"] = edges.copy()
    return adata


def build_sergio(regulon_file: str | os.PathLike, out: str | os.PathLike, config: SergioConfig) -> Path:
    """Simulate on a regulon table (``tf``, ``target``) and write the h5ad atomically."""
    from scprior.data.perturbation_prepare import read_regulon_table
    from scprior.safe_io import atomic_path

    adata = simulate_sergio(read_regulon_table(regulon_file), config)
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return Path(out)


def read_sergio(path: str | os.PathLike) -> tuple[ad.AnnData, pd.DataFrame]:
    """The simulated cells and their exact network (tidy ``tf``, ``target``, ``source`` table)."""
    from scprior.data.grn_truth import tidy_edges

    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} is missing; run `dvc repro grn_simulated`.")
    adata = ad.read_h5ad(path)
    if "grn_edges" not in adata.uns or adata.uns.get("scprior", {}).get("real", True):
        raise ScpriorInputError(f"{path} is not a SERGIO simulation written by scprior (no uns['grn_edges']).")
    return adata, tidy_edges(pd.DataFrame(adata.uns["grn_edges"]), "simulated")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from scprior.config import section

    parser = argparse.ArgumentParser(description="SIMULATED SERGIO cells on the real regulon (DVC stage grn_simulated).")
    parser.add_argument("--regulon", default="data/processed/knowledge/regulon.parquet")
    parser.add_argument("--out", default="data/processed/grn/sergio_simulated.h5ad")
    args = parser.parse_args(argv)
    cfg = sergio_config(section("grn_sim"))
    path = build_sergio(args.regulon, args.out, cfg)
    adata = ad.read_h5ad(path)
    print(f"{path}: SIMULATED {adata.n_obs} cells x {adata.n_vars} genes, {len(adata.uns['grn_edges'])} edges, "
          f"{adata.obs['cell_type'].nunique()} cell types")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
