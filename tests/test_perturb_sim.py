"""The Perturb-seq simulator: GEARS layout, labelled simulated, and its ground truth shows in the data."""

from __future__ import annotations

import numpy as np
import pytest
from perturbation_fixtures import make_regulon

from scprior.data.gears import condition_means, validate_gears
from scprior.data.perturb_sim import (
    PerturbSimConfig,
    _propagate,
    simulate_perturb_seq,
    simulation_truth,
)
from scprior.data.perturbations import canonical_condition
from scprior.errors import ScpriorInputError

CFG = PerturbSimConfig(n_singles=12, n_doubles=14, n_genes=90, cells_per_condition=30, n_control_cells=120,
                       min_targets=8, frac_interacting=0.6, frac_ctrl_first=0.2, seed=3)


@pytest.fixture(scope="module")
def sim():
    return simulate_perturb_seq(make_regulon(), CFG)


def test_gears_layout_and_labels(sim):
    validate_gears(sim)
    prov = sim.uns["scprior"]
    assert prov["real"] is False and prov["dataset_id"].startswith("simulated_") and "SIMULATED" in prov["title"]
    counts = sim.layers["counts"].data
    assert np.array_equal(counts, np.round(counts)) and (counts >= 0).all()
    labels = set(sim.obs["condition"])
    assert "ctrl" in labels
    twins = list(sim.uns["simulation"]["twin_labelled_genes"])
    assert len(twins) == 2 and all({f"{g}+ctrl", f"ctrl+{g}"} <= labels for g in twins)
    canon = {canonical_condition(c) for c in labels}
    assert len(canon) == 1 + CFG.n_singles + CFG.n_doubles
    assert sim.n_vars == CFG.n_genes and list(sim.var["gene_name"]) == list(sim.var_names)


def test_seeded(sim):
    again = simulate_perturb_seq(make_regulon(), CFG)
    assert (again.layers["counts"] != sim.layers["counts"]).nnz == 0
    other = simulate_perturb_seq(make_regulon(), PerturbSimConfig(**{**CFG.__dict__, "seed": 4}))
    assert (other.layers["counts"] != sim.layers["counts"]).nnz > 0


def test_ground_truth_shows_in_the_cells(sim):
    truth, gi = simulation_truth(sim)
    info = sim.uns["simulation"]
    sim.obs["canon"] = [canonical_condition(c) for c in sim.obs["condition"]]
    means = condition_means(sim, column="canon")
    observed = means - means.loc["ctrl"]
    # CRISPRa raises, CRISPRi lowers the perturbed gene's own expression
    right = [np.sign(observed.loc[f"{g}+ctrl", g]) == (1 if m == "CRISPRa" else -1)
             for g, m in zip(info["perturbed_genes"], info["modality"])]
    assert np.mean(right) >= 0.9
    # genes the causal model moves move more in the data than genes it leaves alone
    moved, still = [], []
    for g in info["perturbed_genes"]:
        d, o = truth.loc[f"{g}+ctrl"], observed.loc[f"{g}+ctrl"]
        downstream = (d.abs() > 0.3) & (d.index != g)
        if downstream.any():
            moved.append(o[downstream].abs().mean())
        still.append(o[d == 0].abs().mean())
    assert np.mean(moved) > 2 * np.mean(still)
    # observed and true changes agree
    corr = [np.corrcoef(truth.loc[c], observed.loc[c])[0, 1] for c in truth.index if c != "ctrl"]
    assert np.median(corr) > 0.5


def test_truth_follows_the_causal_model(sim):
    """Rebuild W and the shifts from uns['simulation'] and recompute every condition's delta."""
    truth, gi = simulation_truth(sim)
    info = sim.uns["simulation"]
    genes = list(sim.var_names)
    pos = {g: i for i, g in enumerate(genes)}
    W = np.zeros((len(genes), len(genes)))
    W[[pos[t] for t in info["edges_tf"]], [pos[t] for t in info["edges_target"]]] = info["edges_weight"]
    shift = dict(zip(info["perturbed_genes"], info["shift"]))

    def propagate(gs):
        s = np.zeros(len(genes))
        for g in gs:
            s[pos[g]] = shift[g]
        return _propagate(s, W, CFG.propagation_steps), s

    for g in info["perturbed_genes"]:
        assert np.allclose(truth.loc[f"{g}+ctrl"], propagate([g])[0], atol=1e-5)
    assert set(gi["gi_type"]) >= {"additive"} and (gi["gi_type"] != "additive").any()
    for row in gi.itertuples():
        a, b = row.condition.split("+")
        d_ab = truth.loc[row.condition].to_numpy()
        pair, s = propagate([a, b])
        down = s == 0
        assert np.allclose(d_ab[~down], s[~down], atol=1e-5)  # perturbed genes stay clamped
        if row.gi_type == "additive":
            assert np.allclose(d_ab, pair, atol=1e-5)
        elif row.gi_type in ("synergy", "suppression"):
            assert np.allclose(d_ab[down], row.gi_strength * pair[down], atol=1e-5)
            assert (row.gi_strength > 1) == (row.gi_type == "synergy")
        elif row.gi_type == "epistasis":
            assert np.allclose(d_ab[down], propagate([a])[0][down], atol=1e-5)
        else:  # neomorphic: a new effect on k genes
            assert (np.abs(d_ab - pair) > 1e-6).sum() == int(row.gi_strength)


def test_bad_regulon():
    with pytest.raises(ScpriorInputError, match="'tf' and 'target'"):
        simulate_perturb_seq(make_regulon().rename(columns={"tf": "source"}), CFG)
    with pytest.raises(ScpriorInputError, match="regulators"):
        simulate_perturb_seq(make_regulon(n_tfs=5), CFG)


def test_regulon_table_reader_fails_clearly(tmp_path):
    from scprior.data.perturbation_prepare import read_regulon_table

    with pytest.raises(ScpriorInputError, match="dvc repro knowledge"):
        read_regulon_table(tmp_path / "regulon.parquet")
    bad = tmp_path / "edges.tsv"
    bad.write_text("source\ttarget\nA\tB\n")
    with pytest.raises(ScpriorInputError, match="tf"):
        read_regulon_table(bad)
    good = tmp_path / "edges.csv"
    good.write_text("tf,target\nA,B\nA,C\n")
    assert read_regulon_table(good)[["tf", "target"]].values.tolist() == [["A", "B"], ["A", "C"]]
