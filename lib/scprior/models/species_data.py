"""Inputs of the multi-species models: a mapping species -> AnnData of raw counts.

One check at the door for all of them, and one way to stack their cells (obs) in species order.
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import pandas as pd

from scprior.data.species import get_species
from scprior.data.validate import check_counts, check_gene_symbols, check_nonempty, check_obs_column
from scprior.errors import ScpriorInputError


def check_species_adatas(adatas: Mapping[str, ad.AnnData], *, layer: str | None = "counts",
                         label_key: str | None = None, min_species: int = 1) -> list[str]:
    """Validate species -> AnnData (known, distinct species; counts; symbols; labels); return species names."""
    if len(adatas) < min_species:
        raise ScpriorInputError(f"Cross-species integration needs >= {min_species} species, got {list(adatas)}.")
    names = [get_species(s).name for s in adatas]
    if len(set(names)) != len(names):
        raise ScpriorInputError(f"Each species may appear once, got {list(adatas)}.")
    for species, adata in adatas.items():
        label = f"adatas[{species!r}]"
        check_nonempty(adata, name=label)
        check_gene_symbols(adata, species=species, name=label)
        check_counts(adata, layer=layer or None, name=label)
        if label_key is not None:
            check_obs_column(adata, label_key, name=label)
    return names


def stacked_obs(adatas: Mapping[str, ad.AnnData]) -> pd.DataFrame:
    """obs of all species, concatenated in order, ``species`` set (categorical).

    Cell names are kept when unique across species, else prefixed ``"<species>:"``.
    """
    frames = [a.obs.assign(species=get_species(s).name) for s, a in adatas.items()]
    obs = pd.concat(frames)
    if not obs.index.is_unique:
        obs.index = pd.Index([f"{sp}:{name}" for sp, name in zip(obs["species"], obs.index)])
    obs["species"] = pd.Categorical(obs["species"], categories=[get_species(s).name for s in adatas])
    return obs
