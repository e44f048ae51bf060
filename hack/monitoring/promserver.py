"""A real Prometheus (Debian's `prometheus` package) run by tests, and its HTTP API.

`Prometheus` writes a configuration and its rule files into a folder, starts
`/usr/bin/prometheus` listening on loopback only, waits for `/-/ready` and stops it again. The
API calls return the `data` of Prometheus' JSON answer; an answer with `status: error` (a query
that does not parse, a bad range) raises `QueryError` with Prometheus' own message, so a test
sees why.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from loopback import free_port

BINARY = "prometheus"


class QueryError(RuntimeError):
    """Prometheus answered `status: error`."""


class Prometheus:
    """One Prometheus process over `folder` (config, rules, TSDB and its log)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def write(self, config: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]) -> Path:
        """prometheus.yml with `config`, plus one rule file per `rules` entry (name -> file
        body), listed in the config's rule_files; returns the config's path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        names = []
        for name, body in rules.items():
            (self.folder / name).write_text(yaml.safe_dump(dict(body), sort_keys=False))
            names.append(str(self.folder / name))
        path = self.folder / "prometheus.yml"
        path.write_text(yaml.safe_dump({**config, "rule_files": names}, sort_keys=False))
        return path

    def start(self, *, timeout: float = 60) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise FileNotFoundError(f"{BINARY} is not installed (make setup installs Debian's)")
        args = [
            binary,
            f"--config.file={self.folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]
        log = self.log.open("ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self._proc.returncode}: {self.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"prometheus not ready in {timeout:.0f} s: {self.tail()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH; the answer's `data`."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422 carry Prometheus' JSON error
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType', '?')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result (a vector, or a scalar as one pseudo-series)."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(
        self, expr: str, *, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step}"
        )
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Every rule of every group, as /api/v1/rules reports it (health, lastError)."""
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])


@contextlib.contextmanager
def running(
    folder: Path, config: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
) -> Iterator[Prometheus]:
    prom = Prometheus(folder)
    prom.write(config, rules)
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()
