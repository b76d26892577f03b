"""Run one notebook with papermill, parameters from ``params.yaml``: used by ``dvc.yaml`` and tests.

Usage::

    python -m scprior.nbrun notebooks/00_data.ipynb                  # as `dvc repro` does
    python -m scprior.nbrun notebooks/00_data.ipynb -p quick true \
        -p figures_dir /tmp/fig -p metrics_file /tmp/m.json -o /tmp/out.ipynb   # as the tests do

Parameters come from the section ``notebooks.<stem>`` of ``params.yaml``; ``-p`` overrides one.
The notebook must declare exactly those parameters in its cell tagged ``parameters``.
The executed copy goes to ``reports/<stem>.ipynb`` (a DVC output; the stored notebook has no outputs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from scprior.config import load_params, notebook_params
from scprior.errors import ScpriorInputError
from scprior.paths import project_root
from scprior.safe_io import atomic_path, check_writable

#: parameters naming folders / files the notebook writes (checked for writability before the kernel starts)
OUTPUT_DIRS = ("figures_dir", "models_dir")
OUTPUT_FILES = ("metrics_file",)


def declared_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """Names and default values the notebook declares in its ``parameters`` cell."""
    import papermill as pm

    return {name: spec["default"] for name, spec in pm.inspect_notebook(str(notebook)).items()}


def check_contract(notebook: Path, params: dict[str, Any]) -> None:
    """Fail unless the notebook declares exactly the parameters its params.yaml section sets."""
    declared = set(declared_parameters(notebook))
    given = set(params)
    if declared != given:
        raise SystemExit(
            f"{notebook.name}: parameters cell and params.yaml section differ. "
            f"Only in the notebook: {sorted(declared - given)}; only in params.yaml: {sorted(given - declared)}."
        )


def known_notebooks(root: Path, params_file: str | os.PathLike | None = None) -> list[str]:
    """Stems of the notebooks under ``notebooks/`` that have a ``params.yaml`` section."""
    sections = (load_params(params_file or root / "params.yaml") or {}).get("notebooks") or {}
    return sorted(p.stem for p in (root / "notebooks").glob("*.ipynb") if p.stem in sections)


def check_override_types(overrides: dict[str, Any], defaults: dict[str, Any], *, notebook: str = "notebook") -> dict[str, Any]:
    """``overrides`` checked against the types of the declared ``defaults``; returns them (ints
    accepted for floats, numbers for strings, anything where the default is ``None``).

    Fails before the kernel starts, naming the parameter, the value and the type it needs.
    """
    out = {}
    for name, value in overrides.items():
        default = defaults[name]
        if default is None or value is None:
            out[name] = value
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, str):
            ok = isinstance(value, str | int | float) and not isinstance(value, bool)
            value = str(value) if ok else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ScpriorInputError(
                f"{notebook}: parameter {name!r} must be {type(default).__name__} like its default "
                f"{default!r}, got {value!r} ({type(value).__name__}). Pass e.g. -p {name} {_example(default)}."
            )
        out[name] = value
    return out


def _example(default: Any) -> str:
    if isinstance(default, bool):
        return "true"
    if isinstance(default, list | dict):
        return yaml.safe_dump(default, default_flow_style=True).strip()
    return str(default)


def run_notebook(
    notebook: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    params_file: str | os.PathLike | None = None,
    timeout: int | None = None,
) -> Path:
    """Execute ``notebook`` with its params.yaml section plus ``overrides``; return the output path."""
    import nbformat
    import papermill as pm

    root = project_root()
    nb = Path(notebook)
    nb = nb if nb.is_absolute() else root / nb
    if not nb.is_file():
        raise ScpriorInputError(f"No notebook {nb}; the notebooks are {known_notebooks(root, params_file)} "
                                "(run e.g. python -m scprior.nbrun notebooks/00_data.ipynb).")
    try:
        params = notebook_params(nb.stem, params_file)
    except KeyError:
        raise ScpriorInputError(f"params.yaml has no section notebooks.{nb.stem}; every notebook run by nbrun "
                                f"needs one. Known: {known_notebooks(root, params_file)}.") from None
    check_contract(nb, params)
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise SystemExit(f"{nb.name}: no parameter(s) {sorted(unknown)}; it declares {sorted(params)}.")
    params.update(check_override_types(dict(overrides or {}), params, notebook=nb.name))
    out = Path(output) if output else root / "reports" / nb.name
    out = out if out.is_absolute() else root / out
    check_writable(out.parent)
    for key in (*OUTPUT_DIRS, *OUTPUT_FILES):  # an unwritable output folder fails now, not after the run
        if isinstance(params.get(key), str):
            target = Path(params[key]) if Path(params[key]).is_absolute() else root / params[key]
            check_writable(target if key in OUTPUT_DIRS else target.parent)

    env_backup = os.environ.get("MPLBACKEND")
    os.environ.pop("MPLBACKEND", None)  # let the kernel draw inline figures into the executed copy
    os.environ["SCPRIOR_ROOT"] = str(root)
    start = time.perf_counter()
    try:
        with atomic_path(out) as tmp:  # a failed run leaves no half-executed copy behind
            executed = pm.execute_notebook(
                str(nb), str(tmp), parameters=params, cwd=str(root), kernel_name="python3",
                progress_bar=False, execution_timeout=timeout, report_mode=False,
            )
            executed.metadata.setdefault("papermill", {})["output_path"] = str(out)  # not the temporary name
            nbformat.write(executed, str(tmp))
    finally:
        if env_backup is not None:
            os.environ["MPLBACKEND"] = env_backup
    print(f"{nb.name}: executed in {time.perf_counter() - start:.0f} s -> {out}")
    return out


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a scprior notebook with papermill.")
    parser.add_argument("notebook")
    parser.add_argument("-o", "--output", default=None)
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--params-file", default=None)
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell")
    args = parser.parse_args(argv)
    overrides = {k: _parse_value(v) for k, v in args.param}
    try:
        run_notebook(args.notebook, output=args.output, overrides=overrides, params_file=args.params_file,
                     timeout=args.timeout)
    except ScpriorInputError as exc:
        print(f"nbrun: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
