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


def test_executed_copy_is_written_atomically(tmp_path, monkeypatch):
    import json

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text("notebooks:\n  99_toy:\n    quick: false\n    seed: 0\n")
    _notebook(root / "notebooks" / "99_toy.ipynb", "quick = False\nseed = 0\n")
    monkeypatch.setenv("SCPRIOR_ROOT", str(root))
    out = tmp_path / "out" / "toy.ipynb"
    run_notebook("notebooks/99_toy.ipynb", output=out, overrides={"seed": 3})
    meta = json.loads(out.read_text())["metadata"]["papermill"]
    assert meta["output_path"] == str(out) and meta["parameters"] == {"quick": False, "seed": 3}
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy.ipynb"]
    # a failing run keeps the previous executed copy and leaves no temporary file
    before = out.read_bytes()
    _notebook(root / "notebooks" / "99_toy.ipynb", "quick = False\nseed = 0\n")
    nb = json.loads((root / "notebooks" / "99_toy.ipynb").read_text())
    nb["cells"][1]["source"] = "raise RuntimeError('boom')"
    (root / "notebooks" / "99_toy.ipynb").write_text(json.dumps(nb))
    with pytest.raises(Exception, match="boom"):
        run_notebook("notebooks/99_toy.ipynb", output=out)
    assert out.read_bytes() == before and sorted(p.name for p in out.parent.iterdir()) == ["toy.ipynb"]
