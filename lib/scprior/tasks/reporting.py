"""Writing ``metrics/<task>.json``: stable key order, rounded floats, atomic."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from scprior.safe_io import write_text_atomic


def _clean(obj: Any, digits: int) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, digits)
    return obj


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike, *, digits: int = 4) -> Path:
    """Write ``metrics`` as pretty JSON (sorted keys, floats rounded, NaN -> null); return the path."""
    return write_text_atomic(path, json.dumps(_clean(metrics, digits), indent=2, sort_keys=True) + "\n")
