"""Train/val/test splits of perturbation conditions: GEARS's splits, reproduced, and hold-out splits.

GEARS (``gears/data_utils.py``, ``DataSplitter``) splits *conditions*, never cells:

- ``simulation``: a seeded 75% of the perturbed genes are "train genes". Singles of train genes go to
  train; combos with one train gene go to test (``combo_seen1``); of the combos with two train genes
  a seeded 75% go to train and the rest to test (``combo_seen2``); singles of the other genes are
  test (``unseen_single``) and so are combos of two such genes (``combo_seen0``). The same procedure
  on the train list (90% / 90%) carves out validation. ``ctrl`` is always train.
- ``combo_seen0/1/2`` and ``single``: GEARS's older splits (test genes drawn with replacement;
  combos mixing test and train genes dropped for ``combo_seen0``; ``single`` drops every combo of a
  test gene).

The random draws follow GEARS exactly (NumPy's legacy ``RandomState(seed)``), so
:func:`simulation_split` on GEARS's 284 Norman conditions with seed 1 gives its published test
subgroups (combo seen0 9, seen1 52, seen2 18, unseen single 37 labels) and on Adamson's 87 its
58/7/22 train/val/test. One deliberate difference: the labels of one target set (``A+B``/``B+A``,
``A+ctrl``/``ctrl+A``) always land in the same split (GEARS guarantees that only for singles);
where no such duplicates exist the result is identical to GEARS's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scprior.data.perturbations import (
    CONTROL,
    canonical_condition,
    group_labels,
    is_combo,
    is_control,
    is_single,
    parse_condition,
    perturbed_genes,
)
from scprior.errors import ScpriorInputError

SUBGROUPS = ("combo_seen0", "combo_seen1", "combo_seen2", "unseen_single")
SPLITS = ("train", "val", "test")


@dataclass
class PerturbationSplit:
    """Which split each condition label belongs to, and the test / val subgroups (GEARS names).

    ``assignment`` maps every raw label to ``train``/``val``/``test`` (or ``excluded`` for
    conditions a split drops); ``test_subgroup`` / ``val_subgroup`` map the GEARS subgroup names to
    raw labels (empty for splits without subgroups).
    """

    kind: str
    seed: int
    assignment: dict[str, str]
    test_subgroup: dict[str, list[str]] = field(default_factory=dict)
    val_subgroup: dict[str, list[str]] = field(default_factory=dict)

    def conditions(self, split: str) -> list[str]:
        """Raw labels in ``split`` (``train``, ``val``, ``test`` or ``excluded``), in input order."""
        return [c for c, s in self.assignment.items() if s == split]

    def subgroup_of(self, condition: str) -> str | None:
        """The test subgroup of a raw test label (``None`` if it has none)."""
        for name, labels in self.test_subgroup.items():
            if condition in labels:
                return name
        return None

    def sizes(self) -> dict[str, int]:
        """Number of raw labels per split and per test subgroup."""
        out = {s: len(self.conditions(s)) for s in SPLITS}
        out.update({f"test_{k}": len(v) for k, v in self.test_subgroup.items()})
        return out

    def label_cells(self, conditions: Sequence[str]) -> np.ndarray:
        """The split of each cell given its condition (``obs['condition']``), as a string array."""
        cond = pd.Series(np.asarray(conditions, dtype=str))
        unknown = sorted(set(cond) - set(self.assignment))
        if unknown:
            raise ScpriorInputError(
                f"{len(unknown)} condition(s) of the data are not in this split (e.g. {unknown[:3]}); "
                "make the split from the same file's conditions."
            )
        return cond.map(self.assignment).to_numpy(dtype=object)

    def check_target_sets(self) -> None:
        """Fail if two labels of one target set (A+ctrl / ctrl+A) sit in different splits."""
        for canon, labels in group_labels(self.assignment).items():
            where = {self.assignment[label] for label in labels}
            if len(where) > 1:
                raise AssertionError(f"Target set {canon} is split across {sorted(where)}: {labels}")


# ------------------------------------------------------------------------------ helpers
def _unique_perts(conditions: Iterable[str]) -> list[str]:
    """Non-control labels in order of first appearance; every label is parsed (fails clearly)."""
    out = []
    seen = set()
    for c in conditions:
        c = str(c)
        parse_condition(c)
        if not is_control(c) and c not in seen:
            seen.add(c)
            out.append(c)
    if not out:
        raise ScpriorInputError("No perturbed conditions to split (only 'ctrl' or nothing).")
    return out


def _close_over_target_sets(chosen: Iterable[str], labels: Sequence[str]) -> set[str]:
    """All labels whose target set is the target set of a chosen label."""
    sets = {canonical_condition(c) for c in chosen}
    return {c for c in labels if canonical_condition(c) in sets}


def _n_in(genes: Sequence[str], pool: set[str]) -> int:
    return sum(g in pool for g in genes)


def _simulation_partition(perts: Sequence[str], train_gene_frac: float, seen2_train_frac: float,
                          seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """One GEARS ``get_simulation_split`` pass: (train labels, test subgroups)."""
    genes = np.asarray(perturbed_genes(perts))
    rs = np.random.RandomState(seed)
    train_genes = set(rs.choice(genes, int(len(genes) * train_gene_frac), replace=False).tolist())
    singles = [p for p in perts if is_single(p)]
    combos = [p for p in perts if is_combo(p)]
    single_train = [p for p in singles if parse_condition(p)[0] in train_genes]
    combos_touching = [p for p in combos if _n_in(parse_condition(p), train_genes) > 0]
    seen1 = [p for p in combos_touching if _n_in(parse_condition(p), train_genes) == 1]
    pool = sorted(set(combos_touching) - set(seen1))  # GEARS: np.setdiff1d (sorted, unique)
    representatives = list(group_labels(pool))  # canonical names; one draw per target set
    first_label = {canon: labels[0] for canon, labels in group_labels(pool).items()}
    rep_labels = [first_label[c] for c in representatives]
    rep_order = sorted(rep_labels)
    rs = np.random.RandomState(seed)
    n_train = int(len(rep_order) * seen2_train_frac)
    chosen = rs.choice(np.asarray(rep_order, dtype=object), n_train, replace=False).tolist() if rep_order else []
    combo_train_set = _close_over_target_sets(chosen, pool)
    # keep GEARS's order: the drawn labels first (in draw order), then their twins
    combo_train = [c for c in chosen] + [c for c in pool if c in combo_train_set and c not in chosen]
    seen2 = [c for c in pool if c not in combo_train_set]
    unseen_single = [p for p in singles if parse_condition(p)[0] not in train_genes]
    seen0 = [p for p in combos if _n_in(parse_condition(p), train_genes) == 0]
    train = single_train + combo_train
    assert len(train) + len(seen0) + len(seen1) + len(seen2) + len(unseen_single) == len(perts)
    return train, {"combo_seen0": seen0, "combo_seen1": seen1, "combo_seen2": seen2,
                   "unseen_single": unseen_single}


def _flatten(groups: dict[str, list[str]]) -> list[str]:
    return [c for labels in groups.values() for c in labels]


# ------------------------------------------------------------------------------ GEARS splits
def simulation_split(conditions: Iterable[str], *, seed: int = 1, train_gene_set_size: float = 0.75,
                     combo_seen2_train_frac: float = 0.75) -> PerturbationSplit:
    """GEARS's ``simulation`` split of condition labels (see the module docstring)."""
    perts = _unique_perts(conditions)
    train, test_groups = _simulation_partition(perts, train_gene_set_size, combo_seen2_train_frac, seed)
    train, val_groups = _simulation_partition(train, 0.9, 0.9, seed)
    assignment = {c: "train" for c in train}
    assignment.update({c: "val" for c in _flatten(val_groups)})
    assignment.update({c: "test" for c in _flatten(test_groups)})
    assignment[CONTROL] = "train"
    split = PerturbationSplit("simulation", seed, assignment, test_groups, val_groups)
    split.check_target_sets()
    return split


def _split_list(perts: list[str], rs: np.random.RandomState, kind: str, seen: int,
                test_size: float) -> tuple[list[str], list[str], list[str]]:
    """GEARS ``get_split_list``: (train, test, held-out) labels for ``single``/``combo`` splits."""
    singles = [p for p in perts if is_single(p)]
    combos = [p for p in perts if is_combo(p)]
    genes = np.asarray(perturbed_genes(perts))
    # GEARS draws test genes with replacement, sized by the number of single conditions
    test_genes = set(rs.choice(genes, int(len(singles) * test_size)).tolist())
    hold_out: list[str] = []
    if kind == "single":
        test = [p for p in singles if parse_condition(p)[0] in test_genes]
        hold_out = [p for p in combos if _n_in(parse_condition(p), test_genes) > 0]
    elif seen in (0, 1):
        test_singles = [p for p in singles if parse_condition(p)[0] in test_genes]
        touching = [p for p in combos if _n_in(parse_condition(p), test_genes) > 0]
        if seen == 0:
            hold_out = [p for p in touching if _n_in(parse_condition(p), test_genes) < 2]
        test = test_singles + [p for p in touching if p not in hold_out]
    elif seen == 2:
        test = rs.choice(np.asarray(combos, dtype=object), int(len(combos) * test_size)).tolist() if combos else []
    else:
        raise ScpriorInputError(f"seen must be 0, 1 or 2, got {seen!r}")
    test_set = _close_over_target_sets(test, perts)
    held = _close_over_target_sets(hold_out, perts) - test_set
    train = [p for p in perts if p not in test_set and p not in held]
    return train, [p for p in perts if p in test_set], [p for p in perts if p in held]


def gears_split(conditions: Iterable[str], kind: str = "simulation", *, seed: int = 1,
                test_size: float = 0.1, val_size: float = 0.1, train_gene_set_size: float = 0.75,
                combo_seen2_train_frac: float = 0.75) -> PerturbationSplit:
    """Any of GEARS's splits by name: ``simulation``, ``combo_seen0``, ``combo_seen1``,
    ``combo_seen2`` or ``single`` (GEARS's ``PertData.prepare_split`` defaults)."""
    if kind == "simulation":
        return simulation_split(conditions, seed=seed, train_gene_set_size=train_gene_set_size,
                                combo_seen2_train_frac=combo_seen2_train_frac)
    if kind == "single":
        split_kind, seen = "single", 0
    elif kind in ("combo_seen0", "combo_seen1", "combo_seen2"):
        split_kind, seen = "combo", int(kind[-1])
    else:
        raise ScpriorInputError(
            f"Unknown split {kind!r}; use 'simulation', 'combo_seen0', 'combo_seen1', 'combo_seen2' or 'single'."
        )
    perts = _unique_perts(conditions)
    rs = np.random.RandomState(seed)
    train, test, held = _split_list(perts, rs, split_kind, seen, test_size)
    train, val, held_val = _split_list(train, rs, split_kind, seen, val_size)
    assignment = {p: "excluded" for p in perts}
    assignment.update({c: "train" for c in train})
    assignment.update({c: "val" for c in val})
    assignment.update({c: "test" for c in test})
    assignment[CONTROL] = "train"
    split = PerturbationSplit(kind, seed, assignment)
    split.check_target_sets()
    return split


# ------------------------------------------------------------------------------ hold-out splits
def seen_subgroups(test: Iterable[str], train: Iterable[str]) -> dict[str, list[str]]:
    """GEARS subgroups of ``test`` labels given the ``train`` labels.

    A gene is *seen* when some training condition perturbs it. Test singles are
    ``unseen_single`` (or ``seen_single`` if their gene is seen through a training combo).
    """
    seen_genes = {g for c in train if not is_control(c) for g in parse_condition(c)}
    groups: dict[str, list[str]] = {k: [] for k in SUBGROUPS}
    for c in test:
        genes = parse_condition(c)
        if len(genes) == 2:
            groups[f"combo_seen{_n_in(genes, seen_genes)}"].append(c)
        elif genes[0] in seen_genes:
            groups.setdefault("seen_single", []).append(c)
        else:
            groups["unseen_single"].append(c)
    return groups


def holdout_split(conditions: Iterable[str], *, test: Iterable[str], val: Iterable[str] = (),
                  seed: int = 0, kind: str = "holdout") -> PerturbationSplit:
    """A split with the given test and validation labels (closed over target sets); the rest train."""
    perts = _unique_perts(conditions)
    test_set = _close_over_target_sets(test, perts)
    val_set = _close_over_target_sets(val, perts) - test_set
    unknown = sorted((set(test) | set(val)) - set(perts))
    if unknown:
        raise ScpriorInputError(f"Hold-out labels not among the conditions: {unknown[:5]}")
    assignment = {p: "test" if p in test_set else "val" if p in val_set else "train" for p in perts}
    assignment[CONTROL] = "train"
    train = [c for c, s in assignment.items() if s == "train"]
    split = PerturbationSplit(kind, seed, assignment,
                              seen_subgroups([p for p in perts if p in test_set], train),
                              seen_subgroups([p for p in perts if p in val_set], train))
    split.check_target_sets()
    return split


def singles_kept_split(conditions: Iterable[str], *, seed: int = 0, n_test_singles: int = 4,
                       combo_test_frac: float = 0.5, n_val: int = 3) -> PerturbationSplit:
    """A hold-out split for small datasets that keeps the singles of some doubles in training.

    Every double whose two singles are both measured goes to test (``combo_seen2``: the additive
    model applies) with its singles in train. ``n_test_singles`` other singles are held out
    (``unseen_single``) together with the doubles that contain them (``combo_seen1``/``0``); of the
    remaining doubles a seeded ``combo_test_frac`` is test. ``n_val`` training conditions (never the
    singles of a test double) validate.
    """
    perts = _unique_perts(conditions)
    singles = {parse_condition(p)[0]: p for p in perts if is_single(p)}
    combos = [p for p in perts if is_combo(p)]
    ready = [c for c in combos if all(g in singles for g in parse_condition(c))]
    protected = {g for c in ready for g in parse_condition(c)}
    rs = np.random.RandomState(seed)
    candidates = sorted(g for g in singles if g not in protected)
    k = min(n_test_singles, len(candidates))
    test_genes = set(rs.choice(np.asarray(candidates, dtype=object), k, replace=False).tolist()) if k else set()
    test = set(ready) | {singles[g] for g in test_genes}
    test |= {c for c in combos if _n_in(parse_condition(c), test_genes) > 0}
    rest = sorted(c for c in combos if c not in test)
    n_combo = int(round(len(rest) * combo_test_frac))
    if n_combo:
        test |= set(rs.choice(np.asarray(rest, dtype=object), n_combo, replace=False).tolist())
    train_pool = sorted(p for p in perts if p not in test and not (is_single(p) and parse_condition(p)[0] in protected))
    n_val = min(n_val, max(len(train_pool) - 1, 0))
    val = rs.choice(np.asarray(train_pool, dtype=object), n_val, replace=False).tolist() if n_val else []
    return holdout_split(perts, test=sorted(test), val=val, seed=seed, kind="singles_kept")


# ------------------------------------------------------------------------------ artefacts
def save_split(split: PerturbationSplit, path: str | os.PathLike) -> Path:
    """Write a split (kind, seed, assignment, test / val subgroups) as JSON, atomically.

    The counterpart of GEARS's ``splits/<name>_simulation_<seed>_0.75.pkl`` and ``..._subgroup.pkl``
    (JSON, so reading it back never runs code).
    """
    from scprior.safe_io import write_text_atomic

    data = {"kind": split.kind, "seed": int(split.seed), "assignment": dict(split.assignment),
            "test_subgroup": {k: list(v) for k, v in split.test_subgroup.items()},
            "val_subgroup": {k: list(v) for k, v in split.val_subgroup.items()}}
    return write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_split(path: str | os.PathLike) -> PerturbationSplit:
    """Read a split written by :func:`save_split`."""
    try:
        data = json.loads(Path(path).read_text())
        return PerturbationSplit(str(data["kind"]), int(data["seed"]), dict(data["assignment"]),
                                 dict(data.get("test_subgroup", {})), dict(data.get("val_subgroup", {})))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ScpriorInputError(f"{path} is not a split written by save_split: {exc}") from None
