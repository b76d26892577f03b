"""Condition names and GEARS's splits, reproduced on GEARS's real Norman and Adamson condition lists."""

from __future__ import annotations

import pandas as pd
import pytest
from perturbation_fixtures import raw_file

from scprior.data.perturbation_splits import (
    gears_split,
    holdout_split,
    seen_subgroups,
    simulation_split,
    singles_kept_split,
)
from scprior.data.perturbations import (
    canonical_condition,
    group_labels,
    parse_condition,
    perturbed_genes,
    target_set,
)
from scprior.errors import ScpriorInputError


@pytest.fixture(scope="module")
def norman_conditions() -> list[str]:
    return [line.strip() for line in raw_file("norman_conditions.txt").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def adamson() -> pd.DataFrame:
    return pd.read_csv(raw_file("adamson_conditions_split_seed1.csv"))


def test_condition_names():
    assert parse_condition("ctrl") == ()
    assert parse_condition("KLF1+ctrl") == ("KLF1",) == parse_condition("ctrl+KLF1")
    assert target_set("A+B") == target_set("B+A")
    assert canonical_condition("ctrl+KLF1") == "KLF1+ctrl"
    assert canonical_condition("MAP2K6+KLF1") == "KLF1+MAP2K6"
    assert group_labels(["A+ctrl", "ctrl+A", "B+A", "A+B"]) == {"A+ctrl": ["A+ctrl", "ctrl+A"], "A+B": ["B+A", "A+B"]}
    assert perturbed_genes(["ctrl", "B+ctrl", "A+C"]) == ["A", "B", "C"]
    for bad in ("KLF1", "A+B+C", "ctrl+ctrl", "A+", "A+A", "control"):
        with pytest.raises(ScpriorInputError):
            parse_condition(bad)


def test_norman_seed1_subgroups_reproduce_gears(norman_conditions):
    assert len(norman_conditions) == 284
    split = simulation_split(norman_conditions, seed=1)
    sizes = {k: len(v) for k, v in split.test_subgroup.items()}
    assert sizes == {"combo_seen0": 9, "combo_seen1": 52, "combo_seen2": 18, "unseen_single": 37}
    split.check_target_sets()
    # both spellings of a gene's single stay together (47 genes have both in GEARS's Norman file)
    twins = [labels for labels in group_labels(norman_conditions).values() if len(labels) == 2]
    assert len(twins) == 47
    for labels in twins:
        assert split.assignment[labels[0]] == split.assignment[labels[1]]
    assert split.assignment["ctrl"] == "train"
    assert set(split.conditions("test")) == {c for v in split.test_subgroup.values() for c in v}


def test_norman_subgroups_follow_their_definition(norman_conditions):
    split = simulation_split(norman_conditions, seed=1)
    train_genes = {g for c in split.conditions("train") + split.conditions("val") for g in parse_condition(c)}
    for n_seen in (0, 1, 2):
        for c in split.test_subgroup[f"combo_seen{n_seen}"]:
            assert sum(g in train_genes for g in parse_condition(c)) == n_seen
    for c in split.test_subgroup["unseen_single"]:
        assert parse_condition(c)[0] not in train_genes


def test_gears_dropped_conditions_change_the_draw(norman_conditions):
    """GEARS's published sizes come from all 284 conditions; without the 7 GO-filtered ones they differ."""
    dropped = {"RHOXF2BB+ctrl", "LYL1+IER5L", "ctrl+IER5L", "KIAA1804+ctrl", "IER5L+ctrl", "RHOXF2BB+ZBTB25", "RHOXF2BB+SET"}
    split = simulation_split([c for c in norman_conditions if c not in dropped], seed=1)
    assert {k: len(v) for k, v in split.test_subgroup.items()} != {"combo_seen0": 9, "combo_seen1": 52,
                                                                   "combo_seen2": 18, "unseen_single": 37}


def test_adamson_seed1_equals_gears_split(adamson):
    split = simulation_split(adamson["condition"], seed=1)
    assert (len(split.conditions("train")), len(split.conditions("val")), len(split.conditions("test"))) == (58, 7, 22)
    assert (adamson["condition"].map(split.assignment) == adamson["gears_simulation_split_seed1"]).all()


def test_split_is_seeded(norman_conditions):
    a, b = simulation_split(norman_conditions, seed=3), simulation_split(norman_conditions, seed=3)
    assert a.assignment == b.assignment
    assert a.assignment != simulation_split(norman_conditions, seed=4).assignment


def test_label_cells_and_unknown_condition(norman_conditions):
    split = simulation_split(norman_conditions, seed=1)
    cells = split.label_cells(["ctrl", "ctrl", norman_conditions[5]])
    assert list(cells[:2]) == ["train", "train"]
    with pytest.raises(ScpriorInputError, match="not in this split"):
        split.label_cells(["NOTAGENE+ctrl"])


@pytest.mark.parametrize("kind", ["combo_seen0", "combo_seen1", "combo_seen2", "single"])
def test_other_gears_splits(norman_conditions, kind):
    split = gears_split(norman_conditions, kind, seed=1)
    split.check_target_sets()
    train_genes = {g for c in split.conditions("train") for g in parse_condition(c)}
    test = split.conditions("test")
    assert test and split.conditions("val")
    if kind == "single":
        assert all(len(parse_condition(c)) == 1 for c in test)
        # combos touching a test gene are dropped, not trained on
        test_genes = {parse_condition(c)[0] for c in test}
        assert not any(set(parse_condition(c)) & test_genes for c in split.conditions("train"))
    if kind == "combo_seen0":
        for c in test:
            if len(parse_condition(c)) == 2:
                assert not set(parse_condition(c)) & train_genes
        assert split.conditions("excluded")
    if kind == "combo_seen2":
        assert all(len(parse_condition(c)) == 2 for c in test)


def test_combo_twins_stay_together():
    conditions = ["ctrl"] + [f"G{i}+ctrl" for i in range(12)] + [f"G{i}+G{i + 1}" for i in range(11)] + ["G2+G1"]
    for seed in range(5):
        split = simulation_split(conditions, seed=seed)
        assert split.assignment["G1+G2"] == split.assignment["G2+G1"]


def test_holdout_and_singles_kept_splits():
    conditions = ["ctrl", "A+ctrl", "B+ctrl", "C+ctrl", "D+ctrl", "E+ctrl", "F+ctrl", "G+ctrl", "H+ctrl", "I+ctrl",
                  "A+B", "C+X", "D+E", "X+Y", "E+F"]
    split = singles_kept_split(conditions, seed=0, n_test_singles=1, combo_test_frac=0.5, n_val=1)
    test = split.conditions("test")
    assert "A+B" in test and "D+E" in test and "E+F" in test  # both singles measured -> test combo_seen2
    assert split.assignment["A+ctrl"] == split.assignment["B+ctrl"] == "train"
    assert set(split.test_subgroup["combo_seen2"]) >= {"A+B"}
    assert len(split.conditions("val")) == 1
    manual = holdout_split(conditions, test=["C+ctrl", "C+X"], val=["F+ctrl"])
    assert manual.test_subgroup["unseen_single"] == ["C+ctrl"]
    assert manual.test_subgroup["combo_seen1"] == ["C+X"]  # X is seen through X+Y
    assert seen_subgroups(["A+B"], ["ctrl"])["combo_seen0"] == ["A+B"]
    with pytest.raises(ScpriorInputError):
        holdout_split(conditions, test=["Q+ctrl"])
    with pytest.raises(ScpriorInputError):
        simulation_split(["ctrl"])
