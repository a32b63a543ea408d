"""Retries of single MLflow client calls on a transient error: which errors may pass if tried again, and a
client wrapper that tries each call again alone (never the calls before it)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

# One client call that meets a transient error ("database is locked" with many jobs on one sqlite file, a
# server that is slow or restarting) is tried again, CALL_RETRIES more times, waiting BACKOFF_S, then twice as
# long each time (at most BACKOFF_MAX_S). Only the call that failed is repeated, never the calls before it,
# with the same arguments (a metric's timestamp included): a metric or param that reached the store before
# the error is written again with the same value, which the store takes as the same entry.
CALL_RETRIES = 5
BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0
_TRANSIENT = ("database is locked", "temporarily unavailable", "timed out", "timeout", "connection",
              "max retries exceeded", "too many requests", "service unavailable", "bad gateway")


def transient(exc: BaseException) -> bool:
    """Whether trying the same call again may succeed: a lock, a connection or timeout error, HTTP 429 or 5xx."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    status = getattr(exc, "get_http_status_code", None)
    with contextlib.suppress(Exception):
        if status is not None and (int(status()) == 429 or int(status()) in (500, 502, 503, 504)):
            text = str(exc).lower()
            # MLflow reports its own refusals (a changed param) as 400s; 500 with a lock or a connection inside
            return int(status()) != 500 or any(word in text for word in _TRANSIENT)
    return any(word in str(exc).lower() for word in _TRANSIENT)


class Retrying:
    """An MlflowClient whose every call is retried, alone, on a transient error (see CALL_RETRIES)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._client, name)
        if not callable(fn):
            return fn

        def call(*args, **kwargs):
            for attempt in range(CALL_RETRIES + 1):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if attempt == CALL_RETRIES or not transient(exc):
                        raise
                    time.sleep(min(BACKOFF_S * 2 ** attempt, BACKOFF_MAX_S))
            return None

        return call
