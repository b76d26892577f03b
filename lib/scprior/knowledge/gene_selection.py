"""Which genes a quick (CI / test) knowledge build embeds: the genes the demo tasks actually use.

The quick set, per species, is the union of
- the ``n_top_genes`` most variable genes (``seurat_v3`` on raw counts, as SATURN selects) of each
  Baron pancreas species,
- the one-to-one orthologs of the other species' variable genes (so cross-species tasks find both
  sides),
- any ``extra`` genes (e.g. the measured genes of a perturbation data set).
Tables are built completely regardless; only embeddings are restricted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from scprior.errors import ScpriorInputError

BARON_ZIP = "baron/came_sample_data.zip"


def highly_variable(adata, n_top_genes: int, *, layer: str = "counts") -> list[str]:
    """``n_top_genes`` most variable genes by scanpy's ``seurat_v3`` on raw counts in ``layers[layer]``."""
    import scanpy as sc

    try:
        import skmisc  # noqa: F401 - seurat_v3 fits a loess from scikit-misc
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise ScpriorInputError("seurat_v3 gene selection needs scikit-misc (pip install -r requirements.txt).") from exc
    n = min(n_top_genes, adata.n_vars)
    hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n, layer=layer, inplace=False)
    hvg.index = adata.var_names
    return hvg.sort_values("highly_variable_rank").index[:n].astype(str).tolist()


def quick_gene_set(raw_dir: str | os.PathLike, *, n_top_genes: int = 2000,
                   extra: dict[str, Iterable[str]] | None = None) -> dict[str, list[str]]:
    """The quick embedding gene set ``{"human": [...], "mouse": [...]}`` (sorted, see module doc)."""
    from scprior.data.baron import read_baron
    from scprior.knowledge.build import RAW_FILES
    from scprior.knowledge.orthologs import read_biomart_orthologs

    raw_dir = Path(raw_dir)
    zip_path = raw_dir / BARON_ZIP
    orth_path = raw_dir / RAW_FILES["orthologs"]
    for p in (zip_path, orth_path):
        if not p.is_file():
            raise ScpriorInputError(f"{p} is missing; run `python -m scprior.data.fetch` first.")
    hvg = {sp_: highly_variable(read_baron(zip_path, sp_), n_top_genes) for sp_ in ("human", "mouse")}
    orth = read_biomart_orthologs(orth_path)
    one = orth[orth["homology_type"] == "one2one"]
    h2m = dict(zip(one["human"], one["mouse"]))
    m2h = dict(zip(one["mouse"], one["human"]))
    genes = {
        "human": set(hvg["human"]) | {m2h[g] for g in hvg["mouse"] if g in m2h},
        "mouse": set(hvg["mouse"]) | {h2m[g] for g in hvg["human"] if g in h2m},
    }
    for sp_, extra_genes in (extra or {}).items():
        genes.setdefault(sp_, set()).update(str(g) for g in extra_genes)
    return {sp_: sorted(v) for sp_, v in genes.items()}
