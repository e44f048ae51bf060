"""The write-or-check door shared by the generators (`make crds`, `make docs`).

Each generator only says which files it owns and what they must contain; this module finds the
stale ones, writes them, or with `--check` writes nothing and fails naming them and the make
target that fixes them - so the two generators cannot drift apart in how they behave.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stale(expected: Mapping[Path, str]) -> list[Path]:
    """The owned files whose content differs from what they must contain (or that are absent)."""
    return [
        path for path, text in expected.items() if not path.exists() or path.read_text() != text
    ]


def main(
    argv: list[str] | None,
    *,
    description: str | None,
    expected: Callable[[], Mapping[Path, str]],
    target: str,
) -> int:
    """`--check`: exit 1 naming each stale file and `make TARGET`; else write the stale ones."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="write nothing; fail on drift")
    args = parser.parse_args(argv)
    files = expected()
    drifted = stale(files)
    if args.check:
        for path in drifted:
            print(f"stale: {path.relative_to(ROOT)} (run `make {target}`)", file=sys.stderr)
        return 1 if drifted else 0
    for path in drifted:
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0
