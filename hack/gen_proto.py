#!/usr/bin/env python3
"""Generate the runtime's gRPC stubs (+ typed .pyi) from `runtime/proto` into `llm_runtime.api`.

One script is the only way stubs come to exist, so the committed files always match the .proto:
`--if-stale` (setup.sh) regenerates only when the digest of the inputs changed, and `--check`
(the drift test) fails when the committed files differ from what the .proto produces now.

protoc names modules after the proto package (`llm.runtime.v1`); we ship them inside our own
package, so the generated imports are rewritten to `llm_runtime.api.v1`. RPC paths such as
`/llm.runtime.v1.Runtime/Generate` are wire names and stay untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "runtime" / "proto"
PROTO_PACKAGE = "llm/runtime/v1"
OUT_DIR = ROOT / "runtime" / "llm_runtime" / "api" / "v1"
DIGEST_FILE = OUT_DIR / "PROTO_DIGEST"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
GENERATOR_DISTS = ("grpcio-tools", "mypy-protobuf", "protobuf")

_IMPORT_FROM = re.compile(r"^from llm\.runtime\.v1 import ", re.MULTILINE)
_MODULE_REF = re.compile(r"\bllm\.runtime\.v1\.(\w+_pb2(?:_grpc)?)\b")


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Every .proto of the API package, sorted so the digest is stable."""
    return sorted((proto_root / PROTO_PACKAGE).glob("*.proto"))


def source_digest(files: list[Path], *, proto_root: Path = PROTO_ROOT) -> str:
    """sha256 over the .proto files and the generator versions: either changing means regenerate."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(proto_root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    for dist in GENERATOR_DISTS:
        h.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
    return h.hexdigest()


def rewrite_imports(text: str) -> str:
    """Point generated imports at `llm_runtime.api.v1` instead of the proto package path."""
    text = _IMPORT_FROM.sub("from llm_runtime.api.v1 import ", text)
    return _MODULE_REF.sub(r"llm_runtime.api.v1.\1", text)


def _plugin(name: str) -> str:
    """The protoc plugin installed next to this interpreter (mypy-protobuf ships two)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} not found next to {sys.executable}: install mypy-protobuf")
    return str(path)


def run_protoc(files: list[Path], *, out: Path, proto_root: Path = PROTO_ROOT) -> None:
    """Run grpc_tools' bundled protoc with the python, grpc and mypy generators into `out`.

    A child process, so the plugins' chatter is shown only when protoc fails.
    """
    from grpc_tools import protoc  # dev-only dependency: imported only when generating

    include = Path(protoc.__file__).parent / "_proto"
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(f) for f in files),
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"protoc failed:\n{result.stdout}{result.stderr}")


def generate(files: list[Path], *, proto_root: Path = PROTO_ROOT) -> dict[str, str]:
    """File name -> contents of every stub the .proto files produce, imports rewritten."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_protoc(files, out=out, proto_root=proto_root)
        produced = sorted((out / PROTO_PACKAGE).iterdir())
        return {
            p.name: rewrite_imports(p.read_text())
            for p in produced
            if p.name.endswith(GENERATED_SUFFIXES)
        }


def committed(out_dir: Path = OUT_DIR) -> dict[str, str]:
    """The stubs currently in the package."""
    return {
        p.name: p.read_text()
        for p in sorted(out_dir.glob("*"))
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def drift(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Names of stubs that are missing, extra or different; empty when in sync."""
    names = sorted(set(expected) | set(actual))
    return [n for n in names if expected.get(n) != actual.get(n)]


def write(stubs: dict[str, str], *, digest: str, out_dir: Path = OUT_DIR) -> None:
    """Replace the package's stubs with `stubs` and record the digest they were made from."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in set(committed(out_dir)) - set(stubs):
        (out_dir / stale).unlink()
    for name, text in stubs.items():
        (out_dir / name).write_text(text)
    init = out_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs for llm.runtime.v1 (see hack/gen_proto.py)."""\n')
    (out_dir / DIGEST_FILE.name).write_text(digest + "\n")


def recorded_digest(out_dir: Path = OUT_DIR) -> str:
    path = out_dir / DIGEST_FILE.name
    return path.read_text().strip() if path.exists() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--if-stale",
        action="store_true",
        help="regenerate only when the .proto files or generator versions changed",
    )
    mode.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the committed stubs differ from a fresh generation",
    )
    args = parser.parse_args(argv)
    files = proto_files()
    digest = source_digest(files)
    if args.if_stale and recorded_digest() == digest:
        return 0
    stubs = generate(files)
    if args.check:
        stale = drift(stubs, committed())
        if recorded_digest() != digest:
            stale.append(DIGEST_FILE.name)
        for name in stale:
            print(f"out of date: {OUT_DIR.relative_to(ROOT) / name}", file=sys.stderr)
        if stale:
            print(
                "run `make gen` (python hack/gen_proto.py) and commit the result", file=sys.stderr
            )
        return 1 if stale else 0
    write(stubs, digest=digest)
    print(f"generated {len(stubs)} files into {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
