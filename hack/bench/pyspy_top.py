"""Top functions of a py-spy profile in collapsed-stack form (`py-spy record --format raw`).

    .venv/bin/py-spy record --format raw --threads -r 50 -o /tmp/bench.txt -- \\
        env PYTHONPATH=hack .venv/bin/python hack/bench/runtime_bench.py --concurrency 32 \\
        --skip-static --skip-naive --http-streams 0
    PYTHONPATH=hack .venv/bin/python hack/bench/pyspy_top.py /tmp/bench.txt --top 20

Prints, per thread (py-spy's `--threads` root frame), its share of all samples, then the functions
with the most samples anywhere on the stack (inclusive) and at the top of it (self), as shares of
that thread's samples. Line numbers are dropped, so a function is one row.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from collections.abc import Iterable
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def frame_name(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`."""
    match = re.match(r"^(?P<func>.*?) \((?P<file>[^:()]*)(:\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({Path(match['file']).name})"


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks = []
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if match:
            stacks.append(([frame_name(f) for f in match["stack"].split(";")], int(match["count"])))
    return stacks


def report(stacks: list[tuple[list[str], int]], *, top: int) -> list[str]:
    by_thread: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for frames, count in stacks:
        by_thread[frames[0]].append((frames[1:], count))
    total = sum(count for _, count in stacks) or 1
    lines = []
    for thread, entries in sorted(by_thread.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        samples = sum(c for _, c in entries) or 1
        lines.append(f"\n{thread}: {samples / total:.1%} of samples")
        inclusive: collections.Counter[str] = collections.Counter()
        leaf: collections.Counter[str] = collections.Counter()
        for frames, count in entries:
            for name in set(frames):
                inclusive[name] += count
            if frames:
                leaf[frames[-1]] += count
        lines.append("  inclusive:")
        lines += [f"  {c / samples:6.1%}  {n}" for n, c in inclusive.most_common(top)]
        lines.append("  self:")
        lines += [f"  {c / samples:6.1%}  {n}" for n, c in leaf.most_common(top)]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    with Path(args.path).open() as f:
        print("\n".join(report(parse(f), top=args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
