"""DVC stages of the perturbation task: the SIMULATED demo file and the real Norman cells, both in
GEARS's layout under ``data/processed/``.

    python -m scprior.data.perturbation_prepare simulated [--regulon data/processed/knowledge/regulon.parquet] [--out ...]
    python -m scprior.data.perturbation_prepare norman [--raw data/raw] [--out ...]
    python -m scprior.data.perturbation_prepare papalexi [--raw data/raw] [--out ...]

Settings of the simulator come from the ``perturbation_sim`` section of ``params.yaml``. Inputs
are only read; outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anndata as ad
import pandas as pd

from scprior.config import section
from scprior.data.gears import read_gears, write_gears
from scprior.data.perturb_sim import PerturbSimConfig, simulate_perturb_seq
from scprior.data.perturbench import read_perturbench_norman
from scprior.data.sources import read_sources
from scprior.errors import ScpriorInputError
from scprior.paths import project_root, resolve

#: dataset name -> file name under the processed folder
PERTURBATION_DATASETS: dict[str, str] = {
    "perturb_simulated": "perturb_simulated.h5ad",
    "norman19_devel": "norman19_devel_gears.h5ad",
    "papalexi21": "papalexi21_gears.h5ad",
}
NORMAN_RAW = "perturbation/perturbench_devel.h5ad"
PAPALEXI_RAW = "perturbation/lowmoi_example_data.rda"
STAGES = {"perturb_simulated": "perturb_simulated", "norman19_devel": "perturb_norman", "papalexi21": "perturb_papalexi"}


def perturbation_path(name: str, processed_dir: str | Path = "data/processed") -> Path:
    """Path of a processed perturbation dataset (``processed_dir`` relative to the checkout root)."""
    if name not in PERTURBATION_DATASETS:
        raise ScpriorInputError(f"Unknown perturbation dataset {name!r}; known: {sorted(PERTURBATION_DATASETS)}.")
    return resolve(processed_dir) / PERTURBATION_DATASETS[name]


def read_perturbation_dataset(name: str, processed_dir: str | Path = "data/processed") -> ad.AnnData:
    """Read and validate one processed perturbation dataset (GEARS layout)."""
    path = perturbation_path(name, processed_dir)
    if not path.is_file():
        stage = STAGES[name]
        raise FileNotFoundError(f"{path} is missing; run `dvc repro {stage}` first.")
    return read_gears(path)


def sim_config(params: dict | None = None) -> PerturbSimConfig:
    """:class:`PerturbSimConfig` from a params dict (default: ``params.yaml`` section ``perturbation_sim``)."""
    params = dict(section("perturbation_sim") if params is None else params)
    unknown = set(params) - set(PerturbSimConfig.__dataclass_fields__)
    if unknown:
        raise ScpriorInputError(f"perturbation_sim has unknown settings {sorted(unknown)}.")
    return PerturbSimConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


def read_regulon_table(path: str | Path) -> pd.DataFrame:
    """A TF -> target edge table (Parquet, CSV or TSV with columns ``tf``, ``target``), e.g. the
    knowledge stage's ``data/processed/knowledge/regulon.parquet``."""
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{path} is missing; run `dvc repro knowledge` (or pass --regulon with a TF -> "
                                "target table that has columns tf and target).")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",")
    missing = {"tf", "target"} - set(table.columns)
    if missing:
        raise ScpriorInputError(f"{path} lacks the column(s) {sorted(missing)}; a regulon needs tf and target.")
    return table


def build_simulated(regulon_file: str | Path, out: str | Path, config: PerturbSimConfig) -> Path:
    """Simulate on a TF -> target table (the knowledge layer's regulon) and write the GEARS-format file."""
    adata = simulate_perturb_seq(read_regulon_table(regulon_file), config)
    adata.uns["scprior"]["regulon"] = f"Pathway Commons controls-expression-of (priori), from {Path(regulon_file).name}"
    return write_gears(adata, out)


def build_norman(raw_dir: str | Path, out: str | Path) -> Path:
    """Real Norman 2019 cells (perturbench devel cut) -> GEARS-format file."""
    root = project_root()
    src = {s.path: s for s in read_sources(root / "data.dvc")}[NORMAN_RAW]
    prov = {"source": {"file": f"data/raw/{src.path}", "pin": src.pin, "license": src.license, "sha256": src.sha256}}
    adata = read_perturbench_norman(Path(raw_dir) / NORMAN_RAW, provenance=prov)
    return write_gears(adata, out)


def build_papalexi(raw_dir: str | Path, out: str | Path, *, min_purity: float = 0.8) -> Path:
    """Real Papalexi 2021 THP-1 knockouts (sceptredata) -> GEARS-format file (:mod:`scprior.data.papalexi`)."""
    from scprior.data.papalexi import lowmoi_to_gears

    src = {s.path: s for s in read_sources(project_root() / "data.dvc")}.get(PAPALEXI_RAW)
    prov = {"source": {"file": f"data/raw/{PAPALEXI_RAW}", "pin": src.pin, "license": src.license,
                       "sha256": src.sha256}} if src is not None else {}
    adata = lowmoi_to_gears(Path(raw_dir) / PAPALEXI_RAW, min_purity=min_purity, provenance=prov)
    return write_gears(adata, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the perturbation task's processed files.")
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("simulated", help="SIMULATED GEARS-format demo")
    s.add_argument("--regulon", default="data/processed/knowledge/regulon.parquet",
                   help="TF -> target table (columns tf, target)")
    s.add_argument("--out", default="data/processed/perturb_simulated.h5ad")
    n = sub.add_parser("norman", help="real Norman 2019 cells in GEARS format")
    n.add_argument("--raw", default="data/raw")
    n.add_argument("--out", default="data/processed/norman19_devel_gears.h5ad")
    q = sub.add_parser("papalexi", help="real Papalexi 2021 THP-1 knockouts in GEARS format")
    q.add_argument("--raw", default="data/raw")
    q.add_argument("--out", default="data/processed/papalexi21_gears.h5ad")
    q.add_argument("--min-purity", type=float, default=0.8, help="dominant gRNA's share of the cell's gRNA UMIs")
    args = parser.parse_args(argv)
    if args.what == "simulated":
        path = build_simulated(resolve(args.regulon), resolve(args.out), sim_config())
    elif args.what == "papalexi":
        path = build_papalexi(resolve(args.raw), resolve(args.out), min_purity=args.min_purity)
    else:
        path = build_norman(resolve(args.raw), resolve(args.out))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
