"""Whether a tracker.uri can be used, said in one sentence before any job runs: mlflow installed, a server
that answers, a sqlite file whose folder is writable (and a warning when it sits on a network filesystem,
where sqlite's locking cannot be trusted). No mlflow import for the two usual stores."""

from __future__ import annotations

import importlib.util
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from alrun.core.errors import ConfigError
from alrun.track.base import INSTALL

log = logging.getLogger("alrun")


def check_store(uri: str) -> None:
    """One sentence (ConfigError) unless mlflow is installed and `uri` can be reached; cheap for the two
    usual stores (no mlflow import here): a server answers HTTP, a sqlite file's folder is writable."""
    try:
        found = importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"tracker=mlflow needs the mlflow package, which is not installed: {INSTALL}.")
    advice = ("choose another tracker.uri (the embedded default: tracker.uri=sqlite:///results/mlflow.db), "
              "or tracker=none")
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
        except urllib.error.HTTPError:
            pass  # the server answered (an error page is an answer): reachable
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"tracker.uri={uri} cannot be reached ({reason}); start that MLflow server or "
                              f"{advice}.") from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"tracker.uri={uri} cannot be created ({exc.strerror}); {advice}.") from None
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise ConfigError(f"tracker.uri={uri} is not writable; {advice}.")
        mount = network_mount(db.parent)
        if mount is not None:
            log.warning("alrun: warning: tracker.uri=%s is a sqlite file on a network filesystem (%s at %s), where "
                        "sqlite's file locking is unreliable (jobs on several hosts may wait on it, or damage the "
                        "store): set tracker.uri to an MLflow server (tracker.uri=http://HOST:5000) or to a sqlite "
                        "file on a local disk.", uri, mount[1], mount[0])
    else:  # another database or a hosted service: only MLflow knows how to reach it
        from alrun.track.mlflow_logger import MlflowTracker

        MlflowTracker(uri)


# filesystem types (the third field of /proc/mounts) on which sqlite's locking cannot be trusted
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
                       "fuse.ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "9p", "afs", "panfs", "wekafs")


def network_mount(path: Path, mounts: str | None = None) -> tuple[str, str] | None:
    """(mount point, filesystem type) of the mount that holds `path` when it is a network filesystem, else
    None; `mounts` is the text of /proc/mounts (read here when not given; None where there is none)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts writes a space in a path as \040 (and a tab, newline, backslash likewise, in octal)
        point = fields[1].encode().decode("unicode_escape") if "\\" in fields[1] else fields[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fields[2])  # the last of equal mount points is the one on top
    if best is not None and best[1].lower() in NETWORK_FILESYSTEMS:
        return best
    return None
