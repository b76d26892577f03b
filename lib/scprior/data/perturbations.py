"""Perturbation condition names in GEARS's convention, and the target sets they stand for.

GEARS names a condition ``ctrl`` (control cells), ``GENE+ctrl`` or ``ctrl+GENE`` (one gene
perturbed) or ``GENEA+GENEB`` (two genes). ``A+ctrl`` and ``ctrl+A`` are the same experiment, and
so are ``A+B`` and ``B+A``: scprior treats a condition as its *target set* (the set of perturbed
genes) and names that set canonically (:func:`canonical_condition`: ``A+ctrl``; ``A+B`` with the
genes sorted), so that no split ever separates two labels of one experiment.
"""

from __future__ import annotations

from collections.abc import Iterable

from scprior.errors import ScpriorInputError

CONTROL = "ctrl"


def parse_condition(condition: str) -> tuple[str, ...]:
    """The perturbed genes of a GEARS condition, in label order (``()`` for ``ctrl``).

    Raises :class:`ScpriorInputError` for names GEARS does not use (empty parts, three genes,
    ``ctrl+ctrl``, a gene twice).
    """
    text = str(condition).strip()
    if text == CONTROL:
        return ()
    parts = text.split("+")
    if len(parts) != 2 or any(not p.strip() for p in parts):
        raise ScpriorInputError(
            f"Condition {condition!r} is not in GEARS's format: use 'ctrl', 'GENE+ctrl' (one gene) or "
            "'GENEA+GENEB' (two genes). Rename perturbench-style names first "
            "(scprior.data.perturbench.to_gears_condition maps 'control'/'KLF1'/'KLF1+MAP2K6')."
        )
    genes = tuple(p.strip() for p in parts if p.strip() != CONTROL)
    if not genes:
        raise ScpriorInputError(f"Condition {condition!r} perturbs nothing; control cells are named 'ctrl'.")
    if len(genes) == 2 and genes[0] == genes[1]:
        raise ScpriorInputError(f"Condition {condition!r} names the same gene twice; use '{genes[0]}+ctrl'.")
    return genes


def target_set(condition: str) -> frozenset[str]:
    """The set of perturbed genes (empty for ``ctrl``); ``A+ctrl`` and ``ctrl+A`` give the same set."""
    return frozenset(parse_condition(condition))


def canonical_condition(condition: str) -> str:
    """One name per target set: ``ctrl``, ``A+ctrl`` or ``A+B`` with A < B."""
    genes = sorted(parse_condition(condition))
    if not genes:
        return CONTROL
    if len(genes) == 1:
        return f"{genes[0]}+{CONTROL}"
    return "+".join(genes)


def is_control(condition: str) -> bool:
    """True for the control condition ``ctrl``."""
    return str(condition).strip() == CONTROL


def is_single(condition: str) -> bool:
    """True for a one-gene perturbation (``A+ctrl`` / ``ctrl+A``)."""
    return len(parse_condition(condition)) == 1


def is_combo(condition: str) -> bool:
    """True for a two-gene perturbation (``A+B``)."""
    return len(parse_condition(condition)) == 2


def perturbed_genes(conditions: Iterable[str]) -> list[str]:
    """Sorted unique genes perturbed in any of ``conditions`` (GEARS's ``get_genes_from_perts``)."""
    return sorted({g for c in conditions for g in parse_condition(c)})


def group_labels(conditions: Iterable[str]) -> dict[str, list[str]]:
    """Canonical name -> the raw labels of ``conditions`` that stand for it (in input order)."""
    out: dict[str, list[str]] = {}
    for c in conditions:
        labels = out.setdefault(canonical_condition(c), [])
        if c not in labels:
            labels.append(c)
    return out
