"""The pipeline's contracts: params.yaml <-> notebooks, dvc.yaml stages, stored notebooks."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from conftest import ROOT
from scprior.nbrun import check_contract, declared_parameters

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _outs(stage: dict) -> list[str]:
    paths = []
    for key in ("outs", "metrics", "plots"):
        for item in stage.get(key, []) or []:
            paths.append(next(iter(item)) if isinstance(item, dict) else item)
    return paths


def test_there_are_notebooks():
    assert any(nb.stem == "00_data" for nb in NOTEBOOKS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_match_params_yaml(nb):
    section = PARAMS["notebooks"][nb.stem]
    declared = declared_parameters(nb)
    assert set(declared) == set(section), f"{nb.name}: notebook {sorted(declared)} vs params.yaml {sorted(section)}"
    assert {"quick", "figures_dir", "metrics_file"} <= set(declared)
    assert {"seed", "seeds"} & set(declared), f"{nb.name} declares no seed"
    check_contract(nb, section)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_a_stage_run_by_nbrun(nb):
    stage = DVC["stages"].get(f"nb_{nb.stem}")
    assert stage is not None, f"dvc.yaml has no stage nb_{nb.stem}"
    assert stage["cmd"].startswith(f"python -m scprior.nbrun notebooks/{nb.name}")
    assert f"notebooks.{nb.stem}" in stage["params"]
    assert f"notebooks/{nb.name}" in stage["deps"]
    assert f"reports/{nb.name}" in _outs(stage)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_without_outputs(nb):
    notebook = nbformat.read(nb, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{nb.name} has stored outputs"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{nb.name} needs exactly one cell tagged 'parameters'"


def test_no_two_stages_share_an_output():
    seen: dict[str, str] = {}
    for name, stage in DVC["stages"].items():
        for out in _outs(stage):
            assert out not in seen, f"{out} is an output of both {seen[out]} and {name}"
            seen[out] = name


def test_metrics_and_figures_are_committed_not_cached():
    for name, stage in DVC["stages"].items():
        for item in stage.get("metrics", []):
            path, opts = next(iter(item.items()))
            assert opts.get("cache") is False, f"{name}: {path} must be cache: false (committed to git)"
        for item in stage.get("outs", []):
            if isinstance(item, dict):
                path, opts = next(iter(item.items()))
                if path.startswith("figures/"):
                    assert opts.get("cache") is False


def test_stage_params_exist_in_params_yaml():
    for name, stage in DVC["stages"].items():
        for key in stage.get("params", []):
            node = PARAMS
            for part in key.split("."):
                assert part in node, f"stage {name}: params.yaml has no {key}"
                node = node[part]


def test_committed_metrics_are_valid_json():
    for path in (ROOT / "metrics").glob("*.json"):
        json.loads(path.read_text())
