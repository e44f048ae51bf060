"""`llm-operator`: load settings (fail fast), connect, make sure the peering object exists, run kopf.

Liveness is kopf's endpoint (`/healthz` on LLM_OPERATOR_HEALTH_PORT); metrics are served on
LLM_OPERATOR_METRICS_PORT once kopf starts. Logs are JSON lines by default.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import kopf

from llm_operator import handlers, kube, settings


class QuietHandlers(logging.Filter):
    """Drops kopf's success lines of the wake-up handlers ("Handler 'wake-pod' succeeded."):
    one per watch event of every child buries everything else. Failures, other handlers'
    lines, and everything at debug level, still get through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        noisy = message.startswith("Handler 'wake") and message.endswith("' succeeded.")
        return not noisy or record.levelno > logging.INFO


def _parser() -> argparse.ArgumentParser:
    names = "\n".join(
        f"  {settings.PREFIX}{name.upper()}" for name in settings.Settings.model_fields
    )
    return argparse.ArgumentParser(
        prog="llm-operator",
        description="Runs the LLMDeployment operator. Configured by environment variables:\n"
        + names,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    _parser().parse_args(argv)
    try:
        ops = settings.from_env(os.environ)
    except settings.SettingsError as e:
        print(f"llm-operator: bad settings: {e}", file=sys.stderr)
        return 2
    log_format = kopf.LogFormat.JSON if ops.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=log_format, verbose=ops.log_level == "debug")
    logging.getLogger().setLevel(ops.log_level.upper())
    if ops.log_level != "debug":
        logging.getLogger("kopf.objects").addFilter(QuietHandlers())
    kube.load_config()
    if ops.peering:
        for namespace in ops.namespaces or (None,):
            kube.ensure_peering(name=ops.peering_name, namespace=namespace)
    handlers.register(ops)
    kopf.run(
        clusterwide=not ops.namespaces,
        namespaces=ops.namespaces,
        standalone=not ops.peering,
        priority=ops.priority,
        peering_name=ops.peering_name or None,
        liveness_endpoint=f"http://0.0.0.0:{ops.health_port}/healthz",
        memo=kopf.Memo(settings=ops),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
