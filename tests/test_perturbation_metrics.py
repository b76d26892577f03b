"""GEARS metrics against values computed by hand, and the GI coefficients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from perturbation_fixtures import make_gears_adata

from scprior.tasks.perturbation.gi import doubles_with_singles, gi_coefficients, gi_recovery
from scprior.tasks.perturbation.metrics import (
    condition_metrics,
    control_mean,
    evaluate_conditions,
    observed_means,
    pearson,
    summarise_subgroups,
)

PRED = np.array([1.0, 2.0, 3.0, 4.0])
TRUTH = np.array([1.0, 3.0, 0.5, 5.0])
CTRL = np.ones(4)


def test_pearson_convention():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0  # undefined -> 0, as GEARS
    assert pearson([1.0], [2.0]) == 0.0


def test_condition_metrics_by_hand():
    m = condition_metrics(PRED, TRUTH, CTRL, de_idx=[0, 1, 2, 3], non_dropout_idx=[1, 2], target_idx=[3])
    # delta: pred - ctrl = [0, 1, 2, 3], truth - ctrl = [0, 2, -0.5, 4]
    # centred: [-1.5, -.5, .5, 1.5] and [-1.375, .625, -1.875, 2.625]; cov 4.75, ss 5 and 12.6875
    r = 4.75 / np.sqrt(5 * 12.6875)
    assert m["mse"] == pytest.approx((0 + 1 + 6.25 + 1) / 4)
    assert m["pearson"] == pytest.approx(r)  # constant control: same as on deltas
    assert m["pearson_delta"] == pytest.approx(r)
    assert m["pearson_delta_de"] == pytest.approx(r)
    assert m["mse_de"] == pytest.approx(2.0625)
    assert m["frac_correct_direction_de"] == pytest.approx(0.75)  # sign differs only at gene 2
    # target gene 3 removed: [0, 1, 2] vs [0, 2, -0.5] -> cov -0.5, ss 2 and 3.5
    assert m["pearson_delta_de_no_target"] == pytest.approx(-0.5 / np.sqrt(7))
    assert m["mse_top20_de_non_dropout"] == pytest.approx((1 + 6.25) / 2)
    assert m["pearson_delta_top20_de_non_dropout"] == pytest.approx(-1.0)
    assert m["frac_opposite_direction_top20_non_dropout"] == pytest.approx(0.5)


def test_delta_differs_from_raw_pearson_when_control_varies():
    ctrl = np.array([0.0, 3.0, 0.0, 1.0])
    m = condition_metrics(PRED, TRUTH, ctrl, de_idx=[0, 1])
    assert m["pearson"] == pytest.approx(np.corrcoef(PRED, TRUTH)[0, 1])
    assert m["pearson_delta"] == pytest.approx(np.corrcoef(PRED - ctrl, TRUTH - ctrl)[0, 1])
    assert m["pearson_delta"] != pytest.approx(m["pearson"])
    no_change = condition_metrics(ctrl, TRUTH, ctrl, de_idx=[0, 1, 2])
    assert no_change["pearson_delta"] == 0.0 and no_change["pearson_delta_de"] == 0.0


def test_evaluate_and_summarise_on_gears_fixture():
    adata = make_gears_adata()
    truth = observed_means(adata)
    conditions = ["KLF1+ctrl", "ctrl+KLF1", "KLF1+GATA1", "GATA1+TAL1"]
    perfect = {c: truth.loc[c].to_numpy() for c in conditions}
    per = evaluate_conditions(perfect, adata, conditions + ["ctrl"])
    assert list(per.index) == conditions  # ctrl is not scored
    assert np.allclose(per["mse"], 0) and np.allclose(per["pearson_delta"], 1)
    ctrl = control_mean(adata)
    flat = {c: ctrl for c in conditions}
    worse = evaluate_conditions(flat, adata, conditions)
    assert (worse["pearson_delta"] == 0).all() and (worse["mse_de"] > 0).all()
    table = pd.DataFrame({"pearson_delta": [0.2, 0.4, 0.9], "mse_de": [1.0, 3.0, 5.0]}, index=["a", "b", "c"])
    summary = summarise_subgroups(table, {"combo_seen1": ["a", "b"], "unseen_single": ["c"], "combo_seen0": []})
    assert summary.loc["combo_seen1", "pearson_delta"] == pytest.approx(0.3)
    assert summary.loc["combo_seen1", "mse_de"] == pytest.approx(2.0)
    assert summary.loc["all", "pearson_delta"] == pytest.approx(0.5)
    assert "combo_seen0" not in summary.index


def test_gi_coefficients_and_recovery():
    rng = np.random.default_rng(0)
    da, db = rng.normal(size=50), rng.normal(size=50)
    gi = gi_coefficients(da, db, 2.0 * da + 0.5 * db)
    assert gi["c1"] == pytest.approx(2.0) and gi["c2"] == pytest.approx(0.5)
    assert gi["magnitude"] == pytest.approx(np.hypot(2.0, 0.5))
    assert gi_coefficients(da, db, da + db)["non_additivity"] == pytest.approx(0.0, abs=1e-12)
    ctrl = np.zeros(50)
    observed = {"A+ctrl": da, "B+ctrl": db, "C+ctrl": -db, "A+B": 2 * da + db, "A+C": da - 0.2 * db + rng.normal(size=50),
                "B+C": 0.1 * db}
    doubles = doubles_with_singles(list(observed))
    assert doubles == ["A+B", "A+C", "B+C"]
    perfect = gi_recovery(observed, observed, ctrl, doubles)
    assert perfect["magnitude_spearman"] == pytest.approx(1.0) and perfect["residual_pearson"] == pytest.approx(1.0)
    additive = dict(observed, **{"A+B": da + db, "A+C": da - db, "B+C": db - db})
    res = gi_recovery(additive, observed, ctrl, doubles)
    assert res["residual_pearson"] == 0.0  # no residual predicted
