"""PromQL for dashlint: promtool says whether a query is valid, a small reader walks it.

There is no PromQL parser for Python here, so validity is promtool's (Debian's `prometheus`
package, which `make setup` installs): `errors()` writes the queries into one rules file as
recording rules and runs `promtool check rules`. `parse()` only reads queries promtool accepted,
to find each selector (its metric name and label matchers), each range `[...]`, and the function
call or aggregation around them. Operator precedence does not matter to the rules that walk a
query, so a chain of binary operators is one `binary` node whose children are its operands.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)  # fmt: skip
BINARY_WORDS = frozenset({"and", "or", "unless", "atan2"})
BINARY_SYMBOLS = frozenset({"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="})
_TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<duration>(?:\d+(?:ms|[smhdwy]))+(?!\w))
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<ident>[A-Za-z_][\w:]*)
    |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])""",
    re.VERBOSE | re.ASCII,
)


_PROMTOOL_ERROR = re.compile(r'"dashlint:q(\d+)": (.*)')


class PromtoolError(Exception):
    """promtool is missing or failed without naming a query."""


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        raise PromtoolError(
            "promtool is missing: install Debian's `prometheus` package (make setup)"
        )
    return found


def write_rules(path: Path, rules: list[dict[str, Any]]) -> None:
    """A rules file of one group, as `promtool check rules` and `promtool test rules` read it."""
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))


def promtool_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False)


def errors(exprs: Sequence[str]) -> dict[int, str]:
    """promtool's complaint about each expression that is not valid PromQL, by index."""
    if not exprs:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queries.yaml"
        write_rules(path, [{"record": f"dashlint:q{i}", "expr": e} for i, e in enumerate(exprs)])
        proc = promtool_run("check", "rules", str(path))
    found = {int(m[1]): m[2] for m in _PROMTOOL_ERROR.finditer(proc.stdout + proc.stderr)}
    if proc.returncode != 0 and not found:
        raise PromtoolError(f"promtool check rules failed: {proc.stdout}{proc.stderr}")
    return found


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclasses.dataclass
class Node:
    """kind: call, aggregate, selector, matrix, subquery, binary, paren, unary, number, string."""

    kind: str
    name: str = ""  # a call's function, an aggregation's operator, a selector's metric
    children: list[Node] = dataclasses.field(default_factory=list)
    range: str = ""  # a matrix's or subquery's `[...]`, without spaces
    matchers: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)


def tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected character {text[pos]!r} at {pos}")
        if m.lastgroup != "space":
            out.append(Token(str(m.lastgroup), m.group()))
        pos = m.end()
    return out


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = tokens(text)
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token:
        i = self.pos + ahead
        return self.toks[i] if i < len(self.toks) else Token("end", "")

    def word(self, ahead: int = 0) -> str:
        t = self.peek(ahead)
        return t.text.lower() if t.kind == "ident" else ""

    def take(self, text: str | None = None) -> Token:
        t = self.peek()
        if t.kind == "end" or (text is not None and t.text != text):
            raise ValueError(f"expected {text or 'more'}, found {t.text or 'the end'!r}")
        self.pos += 1
        return t

    def expr(self) -> Node:
        operands = [self.unary()]
        while self.peek().text in BINARY_SYMBOLS or self.word() in BINARY_WORDS:
            self.take()
            self.binary_modifiers()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else Node("binary", children=operands)

    def binary_modifiers(self) -> None:
        if self.word() == "bool":
            self.take()
        if self.word() in ("on", "ignoring"):
            self.take()
            self.labels()
        if self.word() in ("group_left", "group_right"):
            self.take()
            if self.peek().text == "(":
                self.labels()

    def unary(self) -> Node:
        if self.peek().text in ("-", "+"):
            self.take()
            return Node("unary", children=[self.unary()])
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.peek().text == "[":
                self.take()
                inner = []
                while self.peek().text != "]":
                    inner.append(self.take().text)
                self.take("]")
                text = "".join(inner)
                node = Node("subquery" if ":" in text else "matrix", children=[node], range=text)
            elif self.word() == "offset":
                self.take()
                if self.peek().text == "-":
                    self.take()
                self.take()
            elif self.peek().text == "@":
                self.take()
                if self.peek().text == "-":
                    self.take()
                if self.take().kind == "ident":  # start() / end()
                    self.take("(")
                    self.take(")")
            else:
                return node

    def primary(self) -> Node:
        t = self.take()
        if t.text == "(":
            inner = self.expr()
            self.take(")")
            return Node("paren", children=[inner])
        if t.text == "{":
            return self.selector("")
        if t.kind in ("number", "duration", "string"):
            return Node("string" if t.kind == "string" else "number")
        if t.kind != "ident":
            raise ValueError(f"unexpected {t.text!r}")
        low = t.text.lower()
        if low in AGGREGATIONS and (self.peek().text == "(" or self.word() in ("by", "without")):
            return self.aggregate(low)
        if self.peek().text == "(":
            return Node("call", t.text, self.args())
        if low in ("inf", "nan"):
            return Node("number")
        if self.peek().text == "{":
            self.take()
            return self.selector(t.text)
        return Node("selector", t.text)

    def aggregate(self, op: str) -> Node:
        if self.word() in ("by", "without"):
            self.take()
            self.labels()
        args = self.args()
        if self.word() in ("by", "without"):
            self.take()
            self.labels()
        return Node("aggregate", op, args)

    def args(self) -> list[Node]:
        self.take("(")
        out = []
        while self.peek().text != ")":
            out.append(self.expr())
            if self.peek().text != ")":
                self.take(",")
        self.take(")")
        return out

    def labels(self) -> list[str]:
        self.take("(")
        out = []
        while self.peek().text != ")":
            out.append(self.take().text)
            if self.peek().text != ")":
                self.take(",")
        self.take(")")
        return out

    def selector(self, name: str) -> Node:
        """The matchers after a consumed `{`; a `__name__="..."` matcher names the metric."""
        matchers = []
        while self.peek().text != "}":
            label, op, value = self.take().text, self.take().text, self.take().text[1:-1]
            matchers.append((label, op, value))
            if label == "__name__" and op == "=":
                name = value
            if self.peek().text != "}":
                self.take(",")
        self.take("}")
        return Node("selector", name, matchers=matchers)


def parse(text: str) -> Node:
    """The tree of a query promtool accepted; ValueError where this reader cannot follow it."""
    reader = _Reader(text)
    node = reader.expr()
    if reader.peek().kind != "end":
        raise ValueError(f"unexpected {reader.peek().text!r} after the expression")
    return node


def walk(node: Node, parents: tuple[Node, ...] = ()) -> Iterator[tuple[Node, list[Node]]]:
    """Every node, depth first, with the nodes above it (outermost first)."""
    yield node, list(parents)
    for child in node.children:
        yield from walk(child, (*parents, node))
