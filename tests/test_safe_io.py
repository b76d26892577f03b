"""Atomic writes keep the old file on failure; torch loads never run code from a file."""

from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from scprior.errors import ScpriorInputError
from scprior.safe_io import (
    atomic_path,
    check_writable,
    load_torch_tensors,
    save_torch_atomic,
    write_text_atomic,
)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_successful_write_replaces(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    fresh = write_text_atomic(tmp_path / "new.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600
    old = tmp_path / "old.txt"
    old.write_text("x")
    old.chmod(0o640)
    write_text_atomic(old, "y")
    assert old.stat().st_mode & 0o777 == 0o640 and old.read_text() == "y"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_fails_at_the_door(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(ScpriorInputError, match="Cannot write"):
        check_writable(folder)


def test_unwritable_path_fails_at_the_door(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ScpriorInputError, match="Cannot write"):
        check_writable(blocker / "sub")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_malicious_torch_file_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    bad = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Evil()}, bad)
    with pytest.raises(ScpriorInputError) as info:
        load_torch_tensors(bad, what="checkpoint")
    assert not marker.exists()
    assert "weights_only=False" not in str(info.value)


def test_plain_pickle_and_garbage_get_clear_errors(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    for path in (raw, garbage, tmp_path / "missing.pt"):
        with pytest.raises(ScpriorInputError, match=str(path.name)):
            load_torch_tensors(path)
    assert not marker.exists()


def test_tensors_round_trip_and_allowed_classes(tmp_path):
    path = tmp_path / "ok.pt"
    save_torch_atomic({"w": torch.arange(3), "cfg": {"a": 1}}, path)
    back = load_torch_tensors(path)
    assert torch.equal(back["w"], torch.arange(3)) and back["cfg"] == {"a": 1}
    ns_path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(layers=2)}, ns_path)
    with pytest.raises(ScpriorInputError):
        load_torch_tensors(ns_path)
    assert load_torch_tensors(ns_path, allowed=[argparse.Namespace])["args"].layers == 2
