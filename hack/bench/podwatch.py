"""Pods as the API server reports them: a watch that never misses a status, and pure readers of
pod dicts and Kubernetes timestamps (first crash, readiness, revision label).

Polling could miss a container's short life between two polls; `kubectl get pods -w` cannot.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llm_runtime.api import contract
from localcluster.cp_testing import Cluster

LABEL_REVISION = contract.LABEL_REVISION
Pod = dict[str, Any]


def parse_time(text: str | None) -> datetime | None:
    """Pure: a Kubernetes RFC 3339 timestamp ("2026-11-29T01:00:12Z", fractions allowed)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def seconds_between(start: str | None, end: str | None) -> float:
    """Pure: `end - start` in seconds; both must be present."""
    a, b = parse_time(start), parse_time(end)
    assert a is not None and b is not None, (start, end)
    return (b - a).total_seconds()


def _terminations(pod: Pod) -> Iterator[str]:
    status = pod.get("status") or {}
    for cs in (
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ):
        for which in ("state", "lastState"):
            ended = (cs.get(which) or {}).get("terminated") or {}
            if ended.get("finishedAt"):
                yield str(ended["finishedAt"])


def first_termination(pods: list[Pod]) -> str | None:
    """Pure: the earliest `finishedAt` of any container (init or main) of `pods`: the first crash."""
    times = [t for pod in pods for t in _terminations(pod)]
    return min(times, key=lambda t: parse_time(t) or datetime.max.replace(tzinfo=UTC), default=None)


def is_ready(pod: Pod) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def revision(pod: Pod) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION, ""))


@dataclass
class PodWatch:
    """`kubectl get pods -w -o json` in the background: every version of every pod, in order.

    Polling could miss a container's short life between two polls; a watch cannot. `versions`
    holds each pod object as the API server sent it (a rolled-back canary's pod is gone soon).
    """

    cluster: Cluster
    namespace: str
    selector: str
    versions: list[Pod] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> PodWatch:
        cmd = [
            str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}",
            "get", "pods", "-n", self.namespace, "-l", self.selector, "-w", "-o", "json",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, env=self.cluster.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            with self._lock:
                self.versions.append(obj)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def of_revision(self, rev: str) -> list[Pod]:
        with self._lock:
            return [p for p in self.versions if revision(p) == rev]

    def pod_uids(self, rev: str) -> set[str]:
        return {str(p["metadata"]["uid"]) for p in self.of_revision(rev)}

    def min_ready(self, rev: str, *, after: int = 0) -> int:
        """The fewest Ready pods of `rev` at any moment from the `after`-th version seen on,
        counting the state at that mark too (0 when nothing was seen at all)."""
        with self._lock:
            history = list(self.versions)
        ready: dict[str, bool] = {}
        lowest: int | None = None
        for i, pod in enumerate(history):
            if revision(pod) == rev:
                meta = pod["metadata"]
                ready[meta["uid"]] = is_ready(pod) and not meta.get("deletionTimestamp")
            if i >= after - 1:
                count = sum(ready.values())
                lowest = count if lowest is None else min(lowest, count)
        return lowest if lowest is not None else 0

    def mark(self) -> int:
        """The number of versions seen so far, for `min_ready(after=...)`."""
        with self._lock:
            return len(self.versions)
