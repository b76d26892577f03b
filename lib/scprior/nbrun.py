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

from scprior.config import notebook_params
from scprior.paths import project_root


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


def run_notebook(
    notebook: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    params_file: str | os.PathLike | None = None,
    timeout: int | None = None,
) -> Path:
    """Execute ``notebook`` with its params.yaml section plus ``overrides``; return the output path."""
    import papermill as pm

    root = project_root()
    nb = Path(notebook)
    nb = nb if nb.is_absolute() else root / nb
    params = notebook_params(nb.stem, params_file)
    check_contract(nb, params)
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise SystemExit(f"{nb.name}: no parameter(s) {sorted(unknown)}; it declares {sorted(params)}.")
    params.update(overrides or {})
    out = Path(output) if output else root / "reports" / nb.name
    out = out if out.is_absolute() else root / out
    out.parent.mkdir(parents=True, exist_ok=True)

    env_backup = os.environ.get("MPLBACKEND")
    os.environ.pop("MPLBACKEND", None)  # let the kernel draw inline figures into the executed copy
    os.environ["SCPRIOR_ROOT"] = str(root)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb), str(out), parameters=params, cwd=str(root), kernel_name="python3",
            progress_bar=False, execution_timeout=timeout, report_mode=False,
        )
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
    run_notebook(args.notebook, output=args.output, overrides=overrides, params_file=args.params_file, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
