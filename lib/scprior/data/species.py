"""The species scprior knows, and how their gene symbols look."""

from __future__ import annotations

from dataclasses import dataclass

from scprior.errors import ScpriorInputError


@dataclass(frozen=True)
class Species:
    """A species: canonical name, NCBI taxon id, and the Ensembl gene-id prefix it uses."""

    name: str
    taxon_id: int
    ensembl_prefix: str
    symbol_case: str  # "upper" (human: KLF1) or "title" (mouse: Klf1)


SPECIES: dict[str, Species] = {
    "human": Species("human", 9606, "ENSG", "upper"),
    "mouse": Species("mouse", 10090, "ENSMUSG", "title"),
}

_ALIASES = {
    "homo sapiens": "human",
    "hsapiens": "human",
    "9606": "human",
    "mus musculus": "mouse",
    "mmusculus": "mouse",
    "10090": "mouse",
}


def get_species(name: str) -> Species:
    """Return the :class:`Species` for ``name`` (``"human"``, ``"Homo sapiens"``, ``"9606"``...)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SPECIES:
        raise ScpriorInputError(
            f"Unknown species {name!r}. scprior knows {sorted(SPECIES)}; "
            "pass one of those names (or its Latin name / NCBI taxon id)."
        )
    return SPECIES[key]
