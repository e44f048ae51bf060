"""The canary's judgement cannot be fooled, hung or crashed by what a pod sends: regexes run in
linear time over a bounded reply, non-finite metrics fail the window naming pod and metric,
counter resets never give negative rates, and only pods the revision's ReplicaSets own count."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm_operator import spec
from llm_operator.rollout import analysis, expect, guards, owners, promtext
from llm_operator.rollout.analysis import Verdict
from llm_runtime.api import contract

pytestmark = pytest.mark.unit

REQS = contract.METRIC_REQUESTS
TTFT = contract.METRIC_TTFT_SECONDS


def _reply(text: str) -> analysis.SmokeReply:
    return analysis.SmokeReply(pod="canary-0", index=2, text=text, latency_seconds=0.1)


def test_a_catastrophic_backtracking_pattern_is_judged_in_linear_time() -> None:
    prompt = spec.SmokePrompt(prompt="p", expect="^(a+)+$")
    text = "a" * 4000 + "!"  # Python's re takes ~forever on this; RE2 is linear
    start = time.monotonic()
    result = analysis.check_smoke_reply(prompt, _reply(text))
    assert time.monotonic() - start < 0.5
    assert result.reason == "SmokePromptMismatch"


def test_a_pattern_re2_refuses_fails_the_window_naming_the_prompt() -> None:
    # Refused at apply too (spec validation, CEL); an object stored before that rule still
    # reaches the operator, so the model is built without validation here.
    prompt = spec.SmokePrompt.model_construct(prompt="p", expect=r"(paris)\1", timeout="30s")
    result = analysis.check_smoke_reply(prompt, _reply("parisparis"))
    assert result.verdict is Verdict.FAILED and result.reason == "SmokePromptInvalid"
    assert "pod canary-0 smoke prompt 2" in result.message and "RE2" in result.message


def test_only_the_first_max_reply_chars_of_a_reply_are_matched() -> None:
    prompt = spec.SmokePrompt(prompt="p", expect="Paris")
    late = "x" * expect.MAX_REPLY_CHARS + "Paris"
    assert analysis.check_smoke_reply(prompt, _reply(late)).reason == "SmokePromptMismatch"
    early = "Paris" + "x" * 10 * expect.MAX_REPLY_CHARS
    assert analysis.check_smoke_reply(prompt, _reply(early)).reason == "SmokePromptPassed"


@pytest.mark.parametrize(
    ("text", "metric"),
    [
        (f'# TYPE {REQS} counter\n{REQS}{{code="OK"}} NaN\n', f'{REQS}{{code="OK"}}'),
        (
            f'# TYPE {TTFT} histogram\n{TTFT}_bucket{{le="+Inf"}} +Inf\n{TTFT}_count 1\n'
            f"{TTFT}_sum 1\n",
            f'{TTFT}_bucket{{le="+Inf"}}',
        ),
        (
            f'# TYPE {TTFT} histogram\n{TTFT}_bucket{{le="+Inf"}} 1\n{TTFT}_count 1\n'
            f"{TTFT}_sum NaN\n",
            f"{TTFT}_sum",
        ),
        (f'# TYPE {REQS} counter\n{REQS}{{code="OK"}} -Inf\n', f'{REQS}{{code="OK"}}'),
    ],
)
def test_non_finite_cumulative_metrics_name_the_metric(text: str, metric: str) -> None:
    with pytest.raises(promtext.BadSampleError) as caught:
        promtext.parse(text)
    result = guards.bad_sample(pod="canary-1", exc=caught.value)
    assert result.verdict is Verdict.FAILED and result.reason == "MetricNotFinite"
    assert f"pod canary-1 metric {metric} is" in result.message


def test_a_non_finite_gauge_is_not_judged() -> None:
    text = f'# TYPE g gauge\ng NaN\n# TYPE {REQS} counter\n{REQS}{{code="OK"}} 3\n'
    assert promtext.parse(text).get(REQS) == 3


_series = st.dictionaries(
    st.sampled_from([(REQS, (("code", c),)) for c in ("OK", "INTERNAL", "UNAVAILABLE")]),
    st.floats(min_value=0, max_value=1e12, allow_nan=False),
)


@given(before=_series, after=_series)
def test_a_window_delta_is_never_negative_even_across_a_restart(
    before: dict[Any, float], after: dict[Any, float]
) -> None:
    window = promtext.delta(promtext.Scrape(before), promtext.Scrape(after))
    assert all(v >= 0 and math.isfinite(v) for v in window.samples.values())
    ratio = promtext.error_ratio(window)
    assert ratio.value is None or 0 <= ratio.value <= 1


def _dep(name: str, rev: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {contract.LABEL_REVISION: rev}}}


def _pod(name: str, rev: str, owner: str | None, *, hash_: str = "7f9c") -> dict[str, Any]:
    refs = (
        []
        if owner is None
        else [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "controller": True}]
    )
    labels = {contract.LABEL_REVISION: rev, owners.TEMPLATE_HASH_LABEL: hash_}
    return {"metadata": {"name": name, "labels": labels, "ownerReferences": refs}}


def test_only_pods_owned_by_a_replicaset_of_the_revisions_deployment_count() -> None:
    deps = [_dep("chat-aaa", "aaa"), _dep("chat-bbb", "bbb")]
    real = _pod("chat-bbb-7f9c-x", "bbb", "chat-bbb-7f9c")
    copied = _pod("fake", "bbb", None)  # labels copied, no owner
    wrong_rs = _pod("fake2", "bbb", "chat-aaa-7f9c")  # owned by the other revision's RS
    not_apps = _pod("fake3", "bbb", "chat-bbb-7f9c")
    not_apps["metadata"]["ownerReferences"][0]["apiVersion"] = "example.com/v1"
    assert owners.owned_pods([real, copied, wrong_rs, not_apps], deps) == [real]
