"""Reading ``params.yaml``: one section per pipeline stage, ``notebooks.<stem>`` per notebook."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from scprior.paths import project_root


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The whole ``params.yaml`` (default: the checkout's) as a dict."""
    path = Path(path) if path else project_root() / "params.yaml"
    return yaml.safe_load(path.read_text()) or {}


def section(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """One dotted section of ``params.yaml``, e.g. ``"prepare"`` or ``"notebooks.00_data"``."""
    node: Any = load_params(path)
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params.yaml has no section {name!r} (stuck at {part!r}).")
        node = node[part]
    return dict(node)


def notebook_params(stem: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Parameters of ``notebooks/<stem>.ipynb``: the section ``notebooks.<stem>``."""
    return section(f"notebooks.{stem}", path)
