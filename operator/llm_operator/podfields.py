"""Admission checks of the fields the operator copies into the runtime Pod as they are:
resources, tolerations, node selector, image. A Pod would refuse these (or, for a mutable image
tag, quietly run whatever a node pulled first); refusing them at `kubectl apply`, naming the
field, beats a Deployment that never gets a Pod. As in `admission`, each check is written for the
apiserver (CEL) and for `spec.parse` (Python) side by side.
"""

from __future__ import annotations

import decimal
import re

from llm_operator import admission

# --- Resource quantities -----------------------------------------------------------------------

_QUANTITY = re.compile(
    r"^[+-]?(\d+\.?\d*|\.\d+)(([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|n|u))?$"
)
_SUFFIX = {
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "": decimal.Decimal(1),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
    **{s: decimal.Decimal(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def quantity(value: int | str) -> decimal.Decimal | None:
    """A Kubernetes quantity's value ("500m" is 0.5, "2Gi" 2**31), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return decimal.Decimal(value)
    found = _QUANTITY.match(value)
    if not found:
        return None
    number, exponent, suffix = found.group(1), found.group(3), found.group(4) or ""
    sign = -1 if value.startswith("-") else 1
    if exponent:
        return sign * decimal.Decimal(number + exponent)
    return sign * decimal.Decimal(number) * _SUFFIX[suffix]


def _is_gpu(name: str) -> bool:
    return name.endswith("/gpu")


def _is_extended(name: str) -> bool:
    return "/" in name


def resource_name_problem(name: str) -> str | None:
    if name in STANDARD_RESOURCES or name.startswith("hugepages-") or _is_extended(name):
        return None
    return (
        f"unknown resource {name!r}: use cpu, memory, ephemeral-storage, hugepages-<size> or a "
        "domain-qualified extended resource such as nvidia.com/gpu"
    )


def amounts_problem(amounts: dict[str, int | str]) -> str | None:
    """What is wrong with one of requests or limits on its own, or None."""
    for name, value in amounts.items():
        amount = quantity(value)
        problem = resource_name_problem(name)
        if problem:
            return problem
        if amount is None:
            return f"{name}: {value!r} is not a quantity (e.g. 500m, 2Gi or 1)"
        if amount < 0:
            return f"{name}: {value!r} is negative"
        if _is_gpu(name) and amount != amount.to_integral_value():
            return f"{name}: {value!r}: GPUs are whole numbers"
    return None


def requests_problem(requests: dict[str, int | str], limits: dict[str, int | str]) -> str | None:
    """What is wrong between requests and limits: an extended resource (nvidia.com/gpu) cannot
    be overcommitted, so its request needs the same limit; no request may exceed its limit."""
    for name, value in requests.items():
        req, lim = quantity(value), quantity(limits[name]) if name in limits else None
        if _is_extended(name) and req is not None and (name not in limits or lim != req):
            return f"requests {name} needs limits {name} of the same value"
        if req is not None and lim is not None and req > lim:
            return f"requests {name} {value!r} is above its limit {limits[name]!r}"
    return None


def _q(expr: str) -> str:
    return f"quantity(string({expr}))"


def _isq(expr: str) -> str:
    return f"isQuantity(string({expr}))"


# The rule on one quantity (a value of requests or limits).
QUANTITY_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"{_isq('self')} && {_q('self')}.compareTo(quantity('0')) >= 0",
        "message": "must be a quantity of at least 0, e.g. 500m, 2Gi or 1",
        "reason": "FieldValueInvalid",
    },
)
# Rules on one of the requests or limits maps.
AMOUNTS_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"self.all(k, k in {list(STANDARD_RESOURCES)} || k.startsWith('hugepages-') || "
        "k.contains('/'))",
        "message": "unknown resource name: use cpu, memory, ephemeral-storage, hugepages-<size> "
        "or a domain-qualified extended resource such as nvidia.com/gpu",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": f"self.all(k, !k.endsWith('/gpu') || !{_isq('self[k]')} || "
        f"{_q('self[k]')}.isInteger())",
        "message": "GPUs (*/gpu) are whole numbers",
        "reason": "FieldValueInvalid",
    },
)
# Rules on the resources object (requests against limits).
RESOURCES_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": "!has(self.requests) || self.requests.all(k, !k.contains('/') || "
        f"!{_isq('self.requests[k]')} || (has(self.limits) && k in self.limits && "
        f"{_isq('self.limits[k]')} && "
        f"{_q('self.requests[k]')}.compareTo({_q('self.limits[k]')}) == 0))",
        "message": "an extended resource (e.g. nvidia.com/gpu) cannot be overcommitted: its "
        "request needs a limit of the same value",
        "fieldPath": ".limits",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
        f"!(k in self.limits) || !{_isq('self.requests[k]')} || !{_isq('self.limits[k]')} || "
        f"!{_q('self.requests[k]')}.isGreaterThan({_q('self.limits[k]')}))",
        "message": "a request must not be above its limit",
        "fieldPath": ".requests",
        "reason": "FieldValueInvalid",
    },
)

# --- Tolerations and node selector -------------------------------------------------------------

TOLERATION_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || "
        "self.value == ''",
        "message": "a toleration with operator Exists matches any value: leave value empty",
        "fieldPath": ".value",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "(has(self.key) && self.key != '') || "
        "(has(self.operator) && self.operator == 'Exists')",
        "message": "a toleration without a key must have operator Exists (it then matches "
        "every taint)",
        "fieldPath": ".operator",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "message": "tolerationSeconds applies only to effect NoExecute",
        "fieldPath": ".effect",
        "reason": "FieldValueInvalid",
    },
)


def toleration_problem(
    *,
    key: str | None,
    operator: str | None,
    value: str | None,
    effect: str | None,
    seconds: int | None,
) -> str | None:
    """The Python half of TOLERATION_RULES."""
    if operator == "Exists" and value:
        return "a toleration with operator Exists matches any value: leave value empty"
    if not key and operator != "Exists":
        return "a toleration without a key must have operator Exists"
    if seconds is not None and effect != "NoExecute":
        return "tolerationSeconds applies only to effect NoExecute"
    return None


NODE_SELECTOR_RULE: dict[str, str] = {
    "rule": f"self.all(k, k.matches(r'{admission.QUALIFIED_NAME}'))",
    "message": "node selector keys must be label keys: [prefix/]name, the name up to 63 "
    "letters, digits, '-', '_' or '.', the prefix a DNS subdomain",
    "reason": "FieldValueInvalid",
}


def label_key_problem(key: str) -> str | None:
    if re.match(admission.QUALIFIED_NAME, key) and len(key) <= 253 + 1 + 63:
        return None
    return f"{key!r} is not a label key"


# --- Image -------------------------------------------------------------------------------------

_HOST_PART = "[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?"
_PATH_PART = "[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*"
_TAG = ":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = "@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# An image reference as the container runtime reads it: [host[:port]/]path[:tag][@digest].
IMAGE = (
    f"^({_HOST_PART}(\\.{_HOST_PART})*(:[0-9]+)?/)?{_PATH_PART}(/{_PATH_PART})*"
    f"({_TAG})?({_DIGEST})?$"
)


def image_problem(image: str, policy: str) -> str | None:
    """Why runtime.image (with its pull policy) is refused; "" is the operator's default."""
    if image == "":
        return None
    if not re.match(IMAGE, image):
        return f"image {image!r} is not a valid image reference"
    if policy == "IfNotPresent" and is_mutable(image):
        return MUTABLE_MESSAGE
    return None


def is_mutable(image: str) -> bool:
    """No digest, and no tag or `:latest`: what a node runs depends on when it pulled."""
    if "@" in image:
        return False
    return not re.search(f"{_TAG}$", image) or image.endswith(":latest")


MUTABLE_MESSAGE = (
    "image has no tag, or :latest, and imagePullPolicy IfNotPresent: each node would keep "
    "whatever it pulled first; pin a tag or a digest, or set imagePullPolicy: Always"
)
IMAGE_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": "!has(self.image) || self.image == '' || !has(self.imagePullPolicy) || "
        "self.imagePullPolicy != 'IfNotPresent' || self.image.contains('@') || "
        f"(self.image.matches(r'{_TAG}$') && !self.image.endsWith(':latest'))",
        "message": MUTABLE_MESSAGE,
        "fieldPath": ".image",
        "reason": "FieldValueInvalid",
    },
)
