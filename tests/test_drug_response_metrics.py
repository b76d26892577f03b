"""Drug-response metrics (CPA's R2s), aggregation, the metrics file schema, verdicts and baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from drug_fixtures import LAYOUT, make_cpa_adata

from scprior.tasks.drug_response import baselines as B
from scprior.tasks.drug_response.data import DrugTask
from scprior.tasks.drug_response.metrics import (
    METRICS,
    ablation_sentence,
    condition_scores,
    losses_to_baselines,
    metrics_json,
    summarise,
    verdict_sentences,
)


def test_condition_scores():
    rng = np.random.default_rng(0)
    m, v = rng.normal(size=50), rng.gamma(2.0, size=50)
    de = np.arange(10)
    perfect = condition_scores(m, v, m, v, de)
    assert perfect == {"r2_mean": 1.0, "r2_var": 1.0, "r2_mean_de": 1.0}
    flat = condition_scores(m, v, np.full(50, m.mean()), np.full(50, v.mean()), de)
    assert np.isclose(flat["r2_mean"], 0.0) and np.isclose(flat["r2_var"], 0.0) and flat["r2_mean_de"] < 0.1
    shifted = m.copy()
    shifted[de] += 5.0  # wrong only on the DE genes
    s = condition_scores(m, v, shifted, v, de)
    assert s["r2_mean_de"] < s["r2_mean"] < 1.0
    assert np.isnan(condition_scores(m, v, m, v, np.array([], dtype=int))["r2_mean_de"])


def _scores() -> pd.DataFrame:
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.2)):
        for cond, base in (("a", 0.5), ("b", 0.7)):
            rows.append({"dataset": "d", "split": "ood_dose", "method": "cpa", "seed": seed, "condition": cond,
                         "r2_mean": base + bump, "r2_mean_de": base + bump - 0.5, "r2_var": base})
            rows.append({"dataset": "d", "split": "ood_dose", "method": "cpa_knowledge", "seed": seed, "condition": cond,
                         "r2_mean": base + bump, "r2_mean_de": base + bump + 0.4, "r2_var": base})
            rows.append({"dataset": "d", "split": "ood_dose", "method": "interpolation", "seed": seed, "condition": cond,
                         "r2_mean": 0.9, "r2_mean_de": 0.3, "r2_var": 0.8})
    return pd.DataFrame(rows)


def test_summary_means_over_conditions_then_seeds_and_the_json_schema():
    summary = summarise(_scores())
    cpa = summary[summary["method"] == "cpa"].iloc[0]
    assert np.isclose(cpa["r2_mean"], np.mean([0.6, 0.8])) and np.isclose(cpa["r2_mean_sd"], np.std([0.6, 0.8], ddof=1))
    assert cpa["n_seeds"] == 2 and cpa["n_conditions"] == 2
    out = metrics_json(summary, {"d": True})
    assert set(out) == {"datasets"} and set(out["datasets"]["d"]) == {"simulated", "splits"}
    assert out["datasets"]["d"]["simulated"] is True
    methods = out["datasets"]["d"]["splits"]["ood_dose"]
    assert set(methods) == {"cpa", "cpa_knowledge", "interpolation"}
    assert all(set(v) == set(METRICS) for v in methods.values())


def test_verdicts_say_where_a_model_loses():
    summary = summarise(_scores())
    comp = losses_to_baselines(summary, ["cpa", "cpa_knowledge"], ["interpolation"], metric="r2_mean_de")
    beats = dict(zip(comp["method"], comp["beats_best_baseline"]))
    assert beats == {"cpa": False, "cpa_knowledge": True}
    text = verdict_sentences(comp)
    assert "cpa loses to a baseline" in text and "interpolation 0.300" in text
    assert "cpa_knowledge beats the best baseline" in text
    assert comp.set_index("method").loc["cpa_knowledge", "clear"]  # +0.8 over the baseline, sd 0.28
    noisy = summary.copy()
    noisy.loc[noisy["method"] == "cpa_knowledge", "r2_mean_de_sd"] = 1.0
    noisy_text = verdict_sentences(losses_to_baselines(noisy, ["cpa_knowledge"], ["interpolation"]))
    assert "within the seeds' spread" in noisy_text
    assert "helps" in ablation_sentence(summary, "cpa_knowledge", "cpa")
    one_seed = summarise(_scores().query("seed == 0"))
    assert "one seed" in ablation_sentence(one_seed, "cpa_knowledge", "cpa")


@pytest.fixture(scope="module")
def task() -> DrugTask:
    return DrugTask.from_adata(make_cpa_adata(), LAYOUT)


def test_task_arrays(task):
    assert task.drugs == ["Belinostat", "Panobinostat", "Tanespimycin"]
    assert (task.dose[task.control] == 0).all() and (task.dose[~task.control] > 0).all()
    assert task.covariate_levels == [["A549", "K562"]]
    assert np.allclose(np.expm1(task.logx).sum(1), task.target_sum, rtol=1e-3)
    conds = task.conditions(np.flatnonzero(task.split("split") == "ood"))
    assert len(conds) == 6 and set(conds["dose"]) == {0.1}


def test_baselines(task):
    train = task.split("split") == "train"
    cond = task.conditions(np.flatnonzero(task.split("split") == "ood")).iloc[0].to_dict()
    cov, drug = cond["covariates"], cond["drug"]
    in_cov = task.cov_mask(cov)
    veh = B.vehicle(task, train, cov, drug, 0.1)
    assert np.allclose(veh[0], task.logx[train & task.control & in_cov].mean(0))
    # nearest seen dose in log10 dose: 0.1 is one decade from 0.01 and from 1.0 -> the lower one
    near = B.nearest_dose(task, train, cov, drug, 0.1)
    at = train & in_cov & (task.drug == drug) & np.isclose(task.dose, 0.01)
    assert np.allclose(near[0], task.logx[at].mean(0))
    # interpolation halfway in log dose between 0.01 and 1.0
    hi = train & in_cov & (task.drug == drug) & np.isclose(task.dose, 1.0)
    interp = B.interpolation(task, train, cov, drug, 0.1)
    assert np.allclose(interp[0], 0.5 * task.logx[at].mean(0) + 0.5 * task.logx[hi].mean(0), atol=1e-6)
    # the other covariate group's shift added to this group's vehicle cells
    other = (1 - cov[0],)
    o = task.cov_mask(other)
    shift = (task.logx[train & o & (task.drug == drug) & np.isclose(task.dose, 1.0) & ~task.control].mean(0)
             - task.logx[train & o & task.control].mean(0))
    cs = B.covariate_shift(task, train, cov, drug, 1.0)
    assert np.allclose(cs[0], B.vehicle(task, train, cov, drug, 1.0)[0] + shift, atol=1e-5)
    assert B.covariate_shift(task, train, cov, drug, 0.1) is None  # nobody saw dose 0.1
    preds = B.baseline_predictions(task, train, cond)
    assert set(preds) == {"vehicle", "nearest_dose", "interpolation"}


def test_unseen_drug_uses_the_most_similar_seen_drug(task):
    train = task.split("split_drug") == "train"
    pano = task.drugs.index("Panobinostat")
    sim = np.eye(3)
    sim[pano] = [0.6, 1.0, 0.1]  # Belinostat is the nearest
    cond = {"covariates": (0,), "drug": pano, "dose": 1.0}
    preds = B.baseline_predictions(task, train, cond, similarity=sim)
    assert set(preds) == {"vehicle", "tanimoto_nearest"}
    beli = train & task.cov_mask((0,)) & (task.drug == 0) & np.isclose(task.dose, 1.0) & ~task.control
    assert np.allclose(preds["tanimoto_nearest"][0], task.logx[beli].mean(0))
