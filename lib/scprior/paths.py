"""Where things live in a checkout: found from the working directory, never hard-coded."""

from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("dvc.yaml", "params.yaml")


def project_root(start: str | os.PathLike | None = None) -> Path:
    """Return the checkout root: the first parent of ``start`` (default: cwd) holding dvc.yaml.

    ``SCPRIOR_ROOT`` overrides the search. Notebooks opened from ``notebooks/`` and runs from the
    repository root therefore resolve the same relative paths.
    """
    env = os.environ.get("SCPRIOR_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if all((candidate / m).exists() for m in _MARKERS):
            return candidate
    raise FileNotFoundError(
        f"No scprior checkout found above {here} (looked for {', '.join(_MARKERS)}). "
        "Run from inside the repository or set SCPRIOR_ROOT to its path."
    )


def resolve(path: str | os.PathLike, root: Path | None = None) -> Path:
    """Resolve ``path`` against the project root unless it is absolute."""
    p = Path(path)
    if p.is_absolute():
        return p
    return (root or project_root()) / p
