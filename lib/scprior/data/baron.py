"""Baron et al. 2016 pancreas (inDrop), human and mouse raw counts, as shipped in ``came``."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import anndata as ad

from scprior.data.anndata_conventions import standardise
from scprior.data.species import get_species
from scprior.data.validate import read_h5ad
from scprior.errors import ScpriorInputError

MEMBERS = {"human": "raw-Baron_human.h5ad", "mouse": "raw-Baron_mouse.h5ad"}
CITATION = "Baron et al. 2016, Cell Systems 3:346 (GEO GSE84133); packaged by came==0.1.13 (MIT)"


def read_baron(
    zip_path: str | Path, species: str, *, target_sum: float = 1e4, provenance: dict | None = None
) -> ad.AnnData:
    """Read one species from came's ``sample_data.zip`` into the scprior layout.

    Returns an AnnData (cells x genes) with ``layers['counts']``, log-normalised ``X``,
    ``obs['cell_type']`` (Cell Ontology class, shared across species), ``obs['cell_ontology_id']``,
    ``obs['species']``, ``obs['batch']`` (donor) and provenance in ``uns['scprior']``.
    The zip is only read.
    """
    sp_ = get_species(species)
    if sp_.name not in MEMBERS:
        raise ScpriorInputError(f"Baron pancreas exists for {sorted(MEMBERS)}, not {species!r}.")
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path} not found; run `python -m scprior.data.fetch` first.")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(zip_path) as zf:
        member = MEMBERS[sp_.name]
        zf.extract(member, tmp)
        adata = read_h5ad(Path(tmp) / member, what=f"{zip_path.name}:{member}")
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    prov = {
        "dataset_id": f"baron_{sp_.name}",
        "title": f"Baron pancreas ({sp_.name}, inDrop)",
        "citation": CITATION,
        "real": True,
        **(provenance or {}),
    }
    standardise(adata, species=sp_.name, cell_type="cell_ontology_class", batch="donor", provenance=prov,
                target_sum=target_sum)
    keep = ["cell_type", "cell_ontology_id", "cell_type1", "species", "batch", "library", "n_counts", "n_genes"]
    adata.obs = adata.obs[keep].rename(columns={"cell_type1": "cell_type_author"})
    return adata
