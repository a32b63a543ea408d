"""The lock around computing a cache: parallel jobs on a cold cache compute it once."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from alrun.core.filelock import exclusive
from alrun.model.features import featurize
from tests.test_features import CPU, frozen_spec, image_bundle


def lock_is_free(path) -> bool:
    """Whether another open file description can take the lock now (flock locks conflict across them)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_lock_is_held_inside_the_block_and_released_after(tmp_path):
    path = tmp_path / "sub" / "x.lock"
    with exclusive(path, "x") as held:
        assert held and not lock_is_free(path)
    assert lock_is_free(path)


def test_lock_is_released_when_the_block_raises(tmp_path):
    path = tmp_path / "x.lock"
    with pytest.raises(RuntimeError), exclusive(path, "x"):
        raise RuntimeError("boom")
    assert lock_is_free(path)


def test_no_lock_where_the_lock_file_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = []
    with exclusive(blocker / "x.lock", "x") as held:  # its folder would be a file
        ran.append(held)
    assert ran == [False]


def test_parallel_jobs_on_a_cold_cache_compute_features_once(tmp_path):
    bundle, spec = image_bundle(n_train=48), frozen_spec(tmp_path / "cache")
    start, results = threading.Barrier(3), []

    def job():
        start.wait()
        results.append(featurize(bundle, spec, CPU))

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    computed = [r for r in results if any("computed resnet18 features" in n for n in r.notes)]
    read = [r for r in results if any("from the cache" in n for n in r.notes)]
    assert len(computed) == 1 and len(read) == 2
    assert all(r.x_train.equal(computed[0].x_train) for r in read)
