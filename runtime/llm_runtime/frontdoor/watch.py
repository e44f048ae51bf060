"""Keeps the routing config in step with its file: poll, compare content, parse, keep the last good.

A ConfigMap mount updates by swapping a `..data` symlink, so the file's own mtime may not move
(and an editor may rewrite a file within one mtime tick): each poll reads the content and compares
it with the last content seen. A change is parsed; a valid one is applied (`on_config`), an
invalid or unreadable one is logged and counted, and the last good config stays in force. The
same bad content is reported once, not on every poll.

Stdlib and asyncio only, no gRPC: an HTTP front door can use it too.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from pathlib import Path

from llm_runtime.frontdoor import routing

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 1.0
# A ConfigMap value is at most 1 MiB; anything larger is not ours.
MAX_CONFIG_BYTES = 1 << 20


class Result(enum.StrEnum):
    """The outcome of a reload, as `llm_frontdoor_config_reloads_total{result}` counts it."""

    OK = "ok"
    INVALID = "invalid"
    UNREADABLE = "unreadable"


class ConfigWatcher:
    """Reads `path` now (`check()`) and every `poll_seconds` (`run()`)."""

    def __init__(
        self,
        path: Path,
        *,
        on_config: Callable[[routing.RoutingConfig], None],
        on_result: Callable[[Result], None] = lambda _result: None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self.config: routing.RoutingConfig | None = None
        self.last_error: str | None = None
        self._on_config = on_config
        self._on_result = on_result
        self._seen: bytes | None = None
        self._unreadable = False

    def _read(self) -> bytes:
        with self.path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise OSError(f"larger than {MAX_CONFIG_BYTES} bytes")
        return data

    def check(self) -> Result | None:
        """One poll: the result when the content changed (or became unreadable), else None."""
        try:
            data = self._read()
        except OSError as exc:
            if self._unreadable:
                return None
            self._unreadable = True
            self.last_error = f"cannot read {self.path}: {exc}"
            log.warning("routing config %s; keeping the last good config", self.last_error)
            return self._report(Result.UNREADABLE)
        self._unreadable = False
        if data == self._seen:
            return None
        self._seen = data
        try:
            config = routing.parse(data)
        except routing.ConfigError as exc:
            self.last_error = str(exc)
            log.error(
                "routing config %s refused: %s; keeping %s", self.path, exc, _describe(self.config)
            )
            return self._report(Result.INVALID)
        self.last_error = None
        if config != self.config:
            self.config = config
            self._on_config(config)
            log.info("routing config %s: %s", self.path, _describe(config))
        return self._report(Result.OK)

    def _report(self, result: Result) -> Result:
        self._on_result(result)
        return result

    async def run(self) -> None:
        """Poll until cancelled (the first poll after `poll_seconds`: call `check()` first)."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                self.check()
            except Exception:  # a bug in a callback must not stop reloads
                log.exception("routing config reload failed")


def _describe(config: routing.RoutingConfig | None) -> str:
    if config is None:
        return "no config"
    text = f"stable {config.stable.revision} ({config.stable.target})"
    if config.canary is not None:
        text += f", canary {config.canary.revision} ({config.canary.target}) at {config.weight}%"
    return text
