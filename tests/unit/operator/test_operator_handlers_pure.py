"""The pure parts of the kopf wiring: the watches' selector and what an idle re-check compares."""

from __future__ import annotations

import kopf
import pytest
from llm_operator import children, handlers, naming

pytestmark = pytest.mark.unit


def test_selector_of_writes_values_and_presence_as_the_api_server_reads_them() -> None:
    labels = {"a": "b", "c": kopf.PRESENT}
    assert handlers.selector_of(labels) == "a=b,c"


def test_the_watch_selector_is_the_owned_filter() -> None:
    want = f"app.kubernetes.io/managed-by=llm-operator,{naming.LABEL_INSTANCE}"
    selector = handlers.OWNED_SELECTOR
    assert selector == want


def test_a_tick_s_inputs_are_the_object_s_version_and_its_children_s() -> None:
    body = {"metadata": {"name": "chat", "namespace": "ns", "resourceVersion": "12"}}
    kids = children.Children.of("chat", {})
    assert handlers.inputs_of(body, kids) == ("12", ())
    # A status write (its own or anyone's) is a new version: the next re-check runs the tick.
    rewritten = {"metadata": {**body["metadata"], "resourceVersion": "13"}}
    assert handlers.inputs_of(rewritten, kids) != handlers.inputs_of(body, kids)


def test_a_tick_that_wrote_the_status_expects_the_version_it_wrote() -> None:
    read = ("12", (("Deployment/chat-abc", "4"),))
    assert handlers.settled_inputs(read, "13") == ("13", read[1])
    assert handlers.settled_inputs(read, "") == read  # nothing written: what it read
