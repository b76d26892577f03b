"""Species: a name plus what is known about it.

Human and mouse are built-in knowledge (taxon id, Ensembl prefix, symbol case), not the list of
what is allowed: any other name is a species too, about which nothing is assumed (no symbol-case
check, no Ensembl prefix) until the user says more (:func:`register_species`, or a ``species``
entry in ``params.yaml``: see :mod:`scprior.tasks.integration.far`). What a model needs for a
species (gene embeddings, chromosome positions) comes from the user's files; a model asked for a
species it has no embeddings for says so ("no gene embeddings for species X: supply ...").
"""

from __future__ import annotations

from dataclasses import dataclass

from scprior.errors import ScpriorInputError


@dataclass(frozen=True)
class Species:
    """A species: canonical name, and what is known about it (``None`` = unknown, nothing assumed).

    ``symbol_case``: ``"upper"`` (human: KLF1), ``"title"`` (mouse: Klf1) or ``None`` (fly genes
    such as ``Myo31DF``, ``esg``, ``CG1234`` follow no single case: no case check is made).
    """

    name: str
    taxon_id: int | None = None
    ensembl_prefix: str | None = None
    symbol_case: str | None = None

    @property
    def builtin(self) -> bool:
        """True for the species scprior ships knowledge for (human, mouse)."""
        return self.name in BUILTIN


BUILTIN: dict[str, Species] = {
    "human": Species("human", 9606, "ENSG", "upper"),
    "mouse": Species("mouse", 10090, "ENSMUSG", "title"),
}
#: kept for code that iterates the built-in species
SPECIES = BUILTIN

_ALIASES = {
    "homo sapiens": "human",
    "hsapiens": "human",
    "9606": "human",
    "mus musculus": "mouse",
    "mmusculus": "mouse",
    "10090": "mouse",
}

#: species the user described in this process (name -> Species), see :func:`register_species`
_REGISTERED: dict[str, Species] = {}


def canonical_name(name: str) -> str:
    """The key a species name is known by: stripped, lower case, aliases resolved."""
    key = str(name).strip().lower()
    if not key:
        raise ScpriorInputError("A species needs a name (got an empty string).")
    return _ALIASES.get(key, key)


def register_species(name: str, *, taxon_id: int | None = None, ensembl_prefix: str | None = None,
                     symbol_case: str | None = None, aliases: tuple[str, ...] = ()) -> Species:
    """Describe a species that is not built in (e.g. ``register_species("fly", taxon_id=7227)``).

    A built-in species cannot be redefined (its name returns the built-in one; conflicting facts
    raise). Returns the :class:`Species`.
    """
    key = canonical_name(name)
    if symbol_case not in (None, "upper", "title"):
        raise ScpriorInputError(f"symbol_case must be 'upper', 'title' or None, got {symbol_case!r}.")
    if key in BUILTIN:
        known = BUILTIN[key]
        if taxon_id is not None and int(taxon_id) != known.taxon_id:
            raise ScpriorInputError(f"{key} is built in with taxon id {known.taxon_id}, not {taxon_id}.")
        return known
    new = {"taxon_id": int(taxon_id) if taxon_id is not None else None, "ensembl_prefix": ensembl_prefix,
           "symbol_case": symbol_case}
    old = _REGISTERED.get(key)
    if old is not None:  # facts add up; a contradiction is an error
        for k, v in new.items():
            if v is not None and getattr(old, k) is not None and getattr(old, k) != v:
                raise ScpriorInputError(f"Species {key!r} is already described with {k}={getattr(old, k)!r}, not {v!r}.")
        new = {k: v if v is not None else getattr(old, k) for k, v in new.items()}
    sp_ = Species(key, **new)
    _REGISTERED[key] = sp_
    for a in aliases:
        _ALIASES[str(a).strip().lower()] = key
    if sp_.taxon_id is not None:
        _ALIASES.setdefault(str(sp_.taxon_id), key)
    return sp_


def get_species(name: str, *, builtin_only: bool = False) -> Species:
    """The :class:`Species` for ``name`` (``"human"``, ``"Homo sapiens"``, ``"9606"``, ``"fly"``...).

    Built-in and registered species come with what is known about them; any other name is a new
    species about which nothing is assumed. ``builtin_only=True`` (code that reads scprior's own
    human/mouse knowledge) refuses other names with a message saying what to supply instead.
    """
    key = canonical_name(name)
    if key in BUILTIN:
        return BUILTIN[key]
    if builtin_only:
        raise ScpriorInputError(
            f"scprior ships knowledge only for {sorted(BUILTIN)}, not {name!r}. For another species supply "
            "its own files (gene table, gene embeddings, optional chromosome positions and orthologs): "
            "see README 'Integrating your own species'."
        )
    return _REGISTERED.get(key) or Species(key)


def no_embeddings_error(species: str, what: str = "gene embeddings") -> ScpriorInputError:
    """The error for a model asked to use a species it has no ``what`` for."""
    name = get_species(species).name
    return ScpriorInputError(
        f"No {what} for species {name!r}: supply them (a GeneEmbeddings per species, e.g. from "
        "scprior.knowledge.formats.read_embeddings, or an `embeddings` file per source in the dataset's "
        "params.yaml entry)."
    )
