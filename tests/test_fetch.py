"""Fetching pinned raw files: pip wheels, sdists, .deb packages, mirrored URLs; checksums enforced."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from scprior.data import fetch
from scprior.data.sources import Source, read_sources


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SCPRIOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write_ar_deb(path: Path, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tf:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", buf.getvalue())]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += header + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(bytes(out))


def test_read_sources_of_the_checkout(root):
    sources = read_sources(root / "data.dvc")
    assert sources, "data.dvc lists no sources"
    for s in sources:
        assert s.kind in {"pip", "apt", "url"}
        assert len(s.sha256) == 64, f"{s.path} has no sha256 recorded"
        assert s.license, f"{s.path} has no licence"
        if s.kind in {"pip", "apt"}:
            assert s.package and s.version and s.member


def test_pip_wheel_member_from_cache(cache, tmp_path):
    payload = b"hello counts"
    (cache / "pip").mkdir(parents=True)
    with zipfile.ZipFile(cache / "pip" / "toypkg-1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("toypkg/data/x.bin", payload)
    src = Source(path="toy/x.bin", kind="pip", package="toypkg", version="1.2",
                 member="toypkg/data/x.bin", sha256=_sha(payload))
    out = fetch.fetch_one(src, tmp_path / "raw", tmp_path)
    assert out.read_bytes() == payload


def test_sdist_member(cache, tmp_path):
    payload = b"regulon"
    (cache / "pip").mkdir(parents=True)
    with tarfile.open(cache / "pip" / "toy_sdist-0.1.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("toy_sdist-0.1/toy/data/r.pkl")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    src = Source(path="r.pkl", kind="pip", package="toy-sdist", version="0.1", member="toy/data/r.pkl",
                 sha256=_sha(payload))
    assert fetch.fetch_one(src, tmp_path / "raw", tmp_path).read_bytes() == payload


def test_deb_member(cache, tmp_path):
    payload = b"sqlite bytes"
    (cache / "apt").mkdir(parents=True)
    _write_ar_deb(cache / "apt" / "r-toy_1.0-1_all.deb", {"usr/lib/R/toy/db.sqlite": payload})
    src = Source(path="k/db.sqlite", kind="apt", package="r-toy", version="1.0-1",
                 member="usr/lib/R/toy/db.sqlite", sha256=_sha(payload))
    assert fetch.fetch_one(src, tmp_path / "raw", tmp_path).read_bytes() == payload


def test_url_from_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "f.csv").write_bytes(b"a,b\n")
    monkeypatch.setenv("SCPRIOR_MIRRORS", str(mirror))
    src = Source(path="p/f.csv", kind="url", url="https://example.invalid/x/f.csv", sha256=_sha(b"a,b\n"))
    assert fetch.fetch_one(src, tmp_path / "raw", tmp_path).read_bytes() == b"a,b\n"


def test_checksum_mismatch_refused(cache, tmp_path):
    (cache / "pip").mkdir(parents=True)
    with zipfile.ZipFile(cache / "pip" / "toypkg-1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("toypkg/x", b"tampered")
    src = Source(path="x", kind="pip", package="toypkg", version="1.2", member="toypkg/x", sha256="0" * 64)
    with pytest.raises(fetch.FetchError, match="Checksum mismatch"):
        fetch.fetch_one(src, tmp_path / "raw", tmp_path)
    assert not (tmp_path / "raw" / "x").exists()


def test_missing_member_names_the_pin(cache, tmp_path):
    (cache / "pip").mkdir(parents=True)
    with zipfile.ZipFile(cache / "pip" / "toypkg-1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("toypkg/other", b"")
    src = Source(path="x", kind="pip", package="toypkg", version="1.2", member="toypkg/x", sha256="0" * 64)
    with pytest.raises(fetch.FetchError, match="no member 'toypkg/x'"):
        fetch.fetch_one(src, tmp_path / "raw", tmp_path)


def test_unreachable_url_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPRIOR_MIRRORS", "")
    src = Source(path="f", kind="url", url="http://127.0.0.1:9/none.h5ad", sha256="0" * 64)
    with pytest.raises(fetch.FetchError, match="SCPRIOR_MIRRORS"):
        fetch.fetch_one(src, tmp_path / "raw", tmp_path / "no_root")


def test_existing_verified_file_is_not_refetched(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "f").write_bytes(b"x")
    src = Source(path="f", kind="pip", package="does-not-exist-pkg", version="9", member="m", sha256=_sha(b"x"))
    assert fetch.fetch_one(src, raw, tmp_path).read_bytes() == b"x"


def test_bad_kind_rejected(tmp_path):
    dvc = tmp_path / "data.dvc"
    dvc.write_text("outs:\n- path: data/raw\nmeta:\n  sources:\n    a:\n      kind: ftp\n")
    with pytest.raises(ValueError, match="kind 'ftp'"):
        read_sources(dvc)
