"""Seeds, devices and threads: the run-time choices every model and task shares."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (if importable); return a NumPy Generator seeded with ``seed``."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed))  # noqa: NPY002 - third-party code still draws from the global state
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a pinned dependency
        pass
    else:
        torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def pick_device(preference: str = "auto") -> str:
    """Return ``"cuda"``, ``"mps"`` or ``"cpu"``.

    ``preference="auto"`` picks the first available in that order; any other value is checked and
    returned, so ``"cpu"`` forces the CPU and ``"cuda"`` fails clearly where there is no GPU.
    """
    import torch

    pref = preference.lower()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if pref == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if has_mps:
            return "mps"
        return "cpu"
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    if pref == "mps" and not has_mps:
        raise ValueError("device='mps' was asked for but MPS is not available; use 'auto' or 'cpu'.")
    if pref not in {"cpu", "mps"} and not pref.startswith("cuda"):
        raise ValueError(f"Unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    return pref


def set_threads(n: int | None = None) -> int:
    """Limit BLAS/OpenMP/torch threads to ``n`` (default: the CPUs this process may use)."""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    try:
        import torch

        # Only when it changes anything: re-setting torch's OpenMP pool after numba/scanpy code
        # ran (e.g. seurat_v3 gene selection) makes later torch ops ~10x slower on CPU.
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass
    return n


# ------------------------------------------------------------------------- torch.distributed
def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_rank0() -> bool:
    """True in a single process and on rank 0 of a distributed run (the one that writes files)."""
    return dist_info()[0] == 0


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment).

    Backend: NCCL when CUDA is visible, else gloo (CPU). Does nothing in a plain single process or
    when the group is already initialised. Returns ``(rank, world_size)``.
    """
    import torch
    import torch.distributed as dist

    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return dist_info()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return dist_info()
