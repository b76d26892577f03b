"""The processed demo datasets: names, files under ``data/processed/``, and reading them."""

from __future__ import annotations

from pathlib import Path

import anndata as ad

from scprior.data.validate import read_h5ad
from scprior.errors import ScpriorInputError
from scprior.paths import resolve

#: dataset name -> file name under the processed folder
DATASETS: dict[str, str] = {
    "baron_human": "baron_human.h5ad",
    "baron_mouse": "baron_mouse.h5ad",
    "pbmc68k_reduced": "pbmc68k_reduced.h5ad",
}


def processed_path(name: str, processed_dir: str | Path = "data/processed") -> Path:
    """Path of a processed dataset file (``processed_dir`` relative to the checkout root)."""
    if name not in DATASETS:
        raise ScpriorInputError(f"Unknown dataset {name!r}; known: {sorted(DATASETS)}.")
    return resolve(processed_dir) / DATASETS[name]


def read_processed(name: str, processed_dir: str | Path = "data/processed") -> ad.AnnData:
    """Read one processed dataset (see :mod:`scprior.data.anndata_conventions` for its layout)."""
    path = processed_path(name, processed_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `dvc repro prepare` (or `make repro`) first.")
    return read_h5ad(path, what=f"processed dataset {name!r}")
