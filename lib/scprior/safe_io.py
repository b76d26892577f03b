"""Writes that never lose data and loads that never run code from a file.

Every writer in scprior goes through :func:`atomic_path` (a temporary file in the target's folder,
renamed over the target only once it is complete, removed if anything fails), and every reader of
a torch file a user may have downloaded goes through :func:`load_torch_tensors`
(``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code); a
pickle goes through :func:`load_pickle_restricted` (only named classes are rebuilt).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from scprior.errors import ScpriorInputError


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check a file can be written there; return it.

    Call before long work (training) so an unwritable output folder fails at the door.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".scprior-write-check-"):
            pass
    except OSError as exc:
        raise ScpriorInputError(
            f"Cannot write to {folder} ({exc.strerror or exc}). Choose a writable output folder "
            "or fix its permissions before starting."
        ) from exc
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    The existing file at ``path`` is untouched until the new one is complete. ``suffix`` keeps a
    file ending that a writer relies on (e.g. ``".npz"``); by default the target's own suffix.
    """
    path = Path(path)
    folder = check_writable(path.parent)
    ending = path.suffix if suffix is None else suffix
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=f".tmp{ending}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the old file's mode, or what a plain write would
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """:func:`torch.save` ``obj`` (tensors and plain data only) to ``path`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_torch_tensors(path: str | os.PathLike, *, allowed: Iterable[type] = (), what: str = "file") -> Any:
    """Load a torch file holding tensors and plain data only; never executes code from it.

    ``allowed`` names extra classes that may be rebuilt (e.g. ``argparse.Namespace`` for fair-esm
    checkpoints). A file that needs anything else, or is corrupt, raises :class:`ScpriorInputError`
    with our own message (never a suggestion to load it unsafely).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{what} {path} does not exist: check the path.")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first or "Unsupported global" in str(exc):
            first = "it holds Python objects other than tensors and plain data"
        raise ScpriorInputError(
            f"{what} {path} cannot be read safely: {first}. scprior loads only tensors and plain "
            "data (torch.load weights_only=True); re-save the file as a state dict of tensors, or "
            "obtain an intact copy."
        ) from None


#: Globals a pickle of plain data may name: builtin containers and numbers, numpy arrays/scalars.
PLAIN_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    **{("builtins", n): None for n in ("dict", "list", "set", "frozenset", "tuple", "str", "int", "float",
                                       "bool", "bytes", "complex")},
    ("collections", "OrderedDict"): None,
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
    **{(m, n): None for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only the ``(module, name)`` globals it is given; anything else is refused."""

    def __init__(self, fh, allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(fh)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key not in self._allowed:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which scprior never loads from a pickle")
        found = self._allowed[key]
        return super().find_class(module, name) if found is None else found


def load_pickle_restricted(path: str | os.PathLike, *, allowed: Mapping[tuple[str, str], Any],
                           what: str = "pickle") -> Any:
    """Unpickle ``path`` rebuilding only the globals in ``allowed``; never executes other code.

    ``allowed`` maps ``(module, name)`` to the object to use (``None``: the real one). Any other
    global, a truncated file or a pickle whose rebuild fails (``TypeError`` ...) raises
    :class:`ScpriorInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ScpriorInputError(f"{what} {path} does not exist: check the path.")
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, allowed).load()
    except Exception as exc:  # noqa: BLE001 - a hostile pickle can raise anything
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScpriorInputError(
            f"{what} {path} cannot be read safely: {detail}. scprior refuses to unpickle code and reads "
            "pickles holding plain data only; obtain an intact copy or convert the file to a plain "
            "format (CSV, Parquet, JSON)."
        ) from None
