"""The notebook runner refuses notebooks whose parameters drift from params.yaml."""

from __future__ import annotations

import nbformat
import pytest

from scprior.nbrun import check_contract, run_notebook


def _notebook(path, params_src: str) -> None:
    cell = nbformat.v4.new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("print(quick)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_contract_mismatch_fails(tmp_path):
    nb = tmp_path / "99_toy.ipynb"
    _notebook(nb, "quick = False\nseed = 0\n")
    check_contract(nb, {"quick": True, "seed": 1})
    with pytest.raises(SystemExit, match="only in params.yaml: \\['extra'\\]"):
        check_contract(nb, {"quick": True, "seed": 1, "extra": 2})
    with pytest.raises(SystemExit, match="Only in the notebook: \\['seed'\\]"):
        check_contract(nb, {"quick": True})


def test_unknown_override_fails(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text("notebooks:\n  99_toy:\n    quick: false\n    seed: 0\n")
    _notebook(root / "notebooks" / "99_toy.ipynb", "quick = False\nseed = 0\n")
    monkeypatch.setenv("SCPRIOR_ROOT", str(root))
    with pytest.raises(SystemExit, match="no parameter"):
        run_notebook("notebooks/99_toy.ipynb", overrides={"nope": 1})
