"""DVC stage ``prepare``: ``data/raw/`` -> ``data/processed/*.h5ad`` in the scprior layout.

    python -m scprior.data.prepare [--raw data/raw] [--out data/processed]

Raw files are only read; outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scprior.config import section
from scprior.data.baron import read_baron
from scprior.data.pbmc import read_pbmc68k_reduced
from scprior.data.processed import DATASETS
from scprior.data.sources import Source, read_sources
from scprior.paths import project_root
from scprior.safe_io import atomic_path, check_writable

RAW_FILES = {
    "baron": "baron/came_sample_data.zip",
    "pbmc": "pbmc/10x_pbmc68k_reduced.h5ad",
}


def _provenance(src: Source) -> dict:
    return {"source": {"file": f"data/raw/{src.path}", "pin": src.pin, "license": src.license, "sha256": src.sha256}}


def write_h5ad(adata, path: Path) -> None:
    """Write ``adata`` to ``path`` atomically (temp file + rename; nothing left on failure)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def prepare(raw_dir: Path, out_dir: Path, sources: dict[str, Source], *, target_sum: float = 1e4) -> dict[str, Path]:
    """Build every processed demo dataset; return name -> written path."""
    written = {}
    check_writable(out_dir)  # fail before reading anything
    baron = sources[RAW_FILES["baron"]]
    for species in ("human", "mouse"):
        adata = read_baron(raw_dir / baron.path, species, target_sum=target_sum, provenance=_provenance(baron))
        written[f"baron_{species}"] = out_dir / DATASETS[f"baron_{species}"]
        write_h5ad(adata, written[f"baron_{species}"])
    pbmc = sources[RAW_FILES["pbmc"]]
    adata = read_pbmc68k_reduced(raw_dir / pbmc.path, provenance=_provenance(pbmc))
    written["pbmc68k_reduced"] = out_dir / DATASETS["pbmc68k_reduced"]
    write_h5ad(adata, written["pbmc68k_reduced"])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build data/processed/ from data/raw/.")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/processed")
    args = parser.parse_args(argv)
    root = project_root()
    sources = {s.path: s for s in read_sources(root / "data.dvc")}
    params = section("prepare")
    written = prepare(root / args.raw, root / args.out, sources, target_sum=float(params["target_sum"]))
    for name, path in written.items():
        print(f"{name}: {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
