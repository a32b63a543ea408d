"""Atomic files and checkpoints: what a torn, corrupt or unwritable file does."""

from __future__ import annotations

import errno
import json
import logging
import os

import pytest

from alrun.core.errors import AlrunError
from alrun.loop import checkpoint
from alrun.loop.checkpoint import (
    CorruptCheckpoint,
    atomic_write_text,
    load_checkpoint,
    previous_path,
    read_checkpoint,
    save_checkpoint,
)


def state(n_rows: int) -> dict:
    rows = [{"step": i, "labelled": 20 + 10 * i, "test_nll": 2.3 - 0.1 * i, "count_b": 1, "count_a": 2}
            for i in range(n_rows)]
    return {"fingerprint": "abc", "labelled": list(range(20 + 10 * n_rows)), "rows": rows, "finished": False}


def test_round_trip_keeps_the_row_key_order(tmp_path):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, state(2))
    loaded = read_checkpoint(path)
    assert loaded == state(2)
    assert list(loaded["rows"][0]) == ["step", "labelled", "test_nll", "count_b", "count_a"]


def test_previous_checkpoint_is_kept(tmp_path):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    assert previous_path(path).name == "checkpoint.prev.json"
    assert len(read_checkpoint(previous_path(path))["rows"]) == 1 and len(read_checkpoint(path)["rows"]) == 2


@pytest.mark.parametrize("damage,reason", [
    (lambda t: t[: len(t) // 2], "not valid JSON"),
    (lambda t: t.replace('"labelled": 30', '"labelled": 31'), "fails its checksum"),
    (lambda t: json.dumps({"labelled": [], "rows": []}), "not an alrun checkpoint"),
    (lambda t: "", "not valid JSON"),
])
def test_damaged_checkpoint_is_detected(tmp_path, damage, reason):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, state(2))
    path.write_text(damage(path.read_text()))
    with pytest.raises(CorruptCheckpoint, match=reason):
        read_checkpoint(path)


def test_load_falls_back_to_previous_and_says_so_once(tmp_path, caplog):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    path.write_text(path.read_text()[:50])
    with caplog.at_level(logging.WARNING, logger="alrun"):
        loaded = load_checkpoint(path)
    assert len(loaded["rows"]) == 1
    [record] = caplog.records
    assert str(path) in record.getMessage() and "after step 0" in record.getMessage()
    # moved aside, so the next save does not keep the corrupt file as the previous checkpoint
    assert not path.exists() and (tmp_path / "checkpoint.corrupt.json").exists()
    save_checkpoint(path, state(2))
    assert len(read_checkpoint(previous_path(path))["rows"]) == 1


def test_load_without_current_uses_previous(tmp_path, caplog):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    os.replace(path, tmp_path / "elsewhere.json")  # killed between the two renames of a save
    with caplog.at_level(logging.WARNING, logger="alrun"):
        assert len(load_checkpoint(path)["rows"]) == 1
    assert caplog.records == []
    assert load_checkpoint(tmp_path / "nothing.json") is None


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_failed_write_is_one_sentence_and_leaves_the_old_file(tmp_path, monkeypatch, code):
    path = tmp_path / "steps.csv"
    atomic_write_text(path, "old\n")

    def fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    with pytest.raises(AlrunError) as info:
        atomic_write_text(path, "new\n")
    message = str(info.value)
    assert message.count(". ") == 0 and message.endswith("earlier results in that folder are intact.")
    assert str(path) in message and os.strerror(code) in message
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["steps.csv"]


def test_checkpoint_save_that_fails_keeps_both_checkpoints(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(AlrunError):
        save_checkpoint(path, state(3))
    assert len(read_checkpoint(path)["rows"]) == 2 and len(read_checkpoint(previous_path(path))["rows"]) == 1


def test_unwritable_folder_is_one_sentence(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(AlrunError, match=r"^Cannot write .*results/job/steps.csv \(Not a directory\)"):
        atomic_write_text(blocker / "job" / "steps.csv", "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions, so a read-only folder stays writable")
def test_read_only_folder_is_one_sentence(tmp_path):
    folder = tmp_path / "job"
    atomic_write_text(folder / "steps.csv", "old\n")
    folder.chmod(0o500)
    try:
        with pytest.raises(AlrunError, match="Permission denied"):
            atomic_write_text(folder / "steps.csv", "new\n")
        assert (folder / "steps.csv").read_text() == "old\n"
    finally:
        folder.chmod(0o700)
