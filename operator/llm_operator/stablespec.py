"""The stable revision's spec, kept in `status.stableTemplate`, so a lost stable can be rebuilt.

During a canary the spec describes the canary: nothing the operator reads any more can produce
the stable's pod template. If someone deletes the stable Deployment then, the rollback (or the
next tick) must bring back exactly the revision that served before, not whatever the spec says.
So while the spec's revision is the stable one, the status records the spec (as written) and the
operator's default image; rebuilding renders that spec again and accepts the result only if its
revision hash is the recorded one (the template is a pure function of both). The spec is kept
as one JSON string: a status merge patch replaces a string whole, whereas it would merge a nested
object key by key and keep fields the spec has since dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llm_operator import spec

Obj = dict[str, Any]


def record(
    previous: Mapping[str, Any] | None,
    *,
    spec_body: Mapping[str, Any],
    spec_revision: str,
    stable_revision: str | None,
    default_image: str,
) -> Obj | None:
    """Pure: the record to keep. The spec's own while it is the stable's; else the previous
    one while it still names the stable; else none (the stable is a revision never seen as the
    spec's, e.g. after an operator upgrade mid-canary)."""
    if stable_revision and spec_revision == stable_revision:
        text = json.dumps(spec_body, sort_keys=True, separators=(",", ":"))
        return {"revision": spec_revision, "defaultImage": default_image, "spec": text}
    if previous and stable_revision and previous.get("revision") == stable_revision:
        return dict(previous)
    return None


def recorded(
    rec: Mapping[str, Any] | None, d: spec.LLMDeployment, revision: str
) -> tuple[spec.LLMDeployment, str] | None:
    """Pure: the LLMDeployment as it was when `revision` was its spec's, and the default image
    then; None when nothing usable is recorded for that revision."""
    if not rec or rec.get("revision") != revision or not isinstance(rec.get("spec"), str):
        return None
    try:
        body = json.loads(rec["spec"])
    except ValueError:
        return None
    meta = {
        "name": d.owner.name,
        "namespace": d.owner.namespace,
        "uid": d.owner.uid,
        "generation": d.owner.generation,
    }
    try:
        old = spec.parse({"metadata": meta, "spec": body})
    except spec.InvalidResourceError:  # recorded under an older, looser CRD
        return None
    return old, str(rec.get("defaultImage") or "")
