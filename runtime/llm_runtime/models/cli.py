"""`llm-runtime convert` and `llm-runtime fetch`, registered into the runtime's CLI.

Building the parsers imports no torch (so `--help` is instant); the handlers import the heavy
modules. Exit codes: 0 done (or already up to date), 1 the source could not be obtained,
2 bad arguments (URI scheme, dtype), 3 the model is malformed or fails its manifest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from llm_runtime.models import builtin, errors

EXIT_OK = 0
EXIT_SOURCE = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
DTYPE_ENV = "LLM_RUNTIME_CONVERT_DTYPE"
_DTYPES = ("bf16", "fp16", "fp32", "bfloat16", "float16", "float32")
_EPILOG = (
    "exit codes: 0 done or already up to date, 1 source not obtainable (missing, offline, "
    "denied), 2 bad arguments, 3 model malformed or failing its manifest"
)

Handler = Callable[[argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    parser.add_argument(
        "--dtype",
        default=env.get(DTYPE_ENV, "bf16"),
        choices=_DTYPES,
        help=f"dtype the weights are stored in (env {DTYPE_ENV}; default %(default)s). bf16 "
        "halves the size and is what CPUs with AVX512_BF16/AMX and modern GPUs serve in; a "
        "pod on hardware without bf16 upcasts at load time",
    )
    parser.add_argument(
        "--format",
        dest="source_format",
        default="auto",
        choices=("auto", "hf", "gguf", "converted"),
        help="how to read the source: auto detects a manifest (converted), config.json + "
        "safetensors (hf) or one .gguf file (gguf); default %(default)s",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite DST even when it is a non-empty directory that holds no model",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars while hashing and converting (default: only on a terminal)",
    )


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    env: Mapping[str, str] | None = None,
) -> None:
    """Add `convert` and `fetch` to the runtime's sub-commands (each sets `func`)."""
    env = os.environ if env is None else env
    convert = subparsers.add_parser(
        "convert",
        help="convert a GGUF or HF model into the deployment format",
        description="Write SRC (a .gguf file, a directory holding one, an HF directory or a "
        "converted directory) to DST as safetensors + tokenizer + llm-manifest.json (format "
        "version, source and its sha256, dtype, sha256 and size of every file, a content "
        "digest). The runtime verifies the manifest on load and loads this format in about a "
        "second, against ~20 s for a GGUF. DST is written atomically (staged in DST.tmp).",
        epilog=_EPILOG,
    )
    convert.add_argument("src", metavar="SRC", help="model to convert (path)")
    convert.add_argument("dst", metavar="DST", help="directory to write (replaced atomically)")
    _common(convert, env)
    convert.set_defaults(func=run_convert)
    fetch = subparsers.add_parser(
        "fetch",
        help="obtain a model by URI and leave it converted in DST (the init container's job)",
        description="Obtain URI and leave it in the deployment format at DST. URIs: "
        f"{builtin.DEFAULT_MODEL_URI} (the packaged default model), file:///abs/path or "
        "/abs/path (a .gguf, HF or converted model, e.g. on a mounted PVC), "
        "hf://org/name[@revision][/file.gguf] (Hugging Face Hub; honours HF_TOKEN, HF_HOME, "
        "HF_HUB_OFFLINE). Idempotent: when DST already holds a verified conversion of the "
        "same source bytes in the same dtype, nothing is written and it says so.",
        epilog=_EPILOG,
    )
    fetch.add_argument("uri", metavar="URI", help="where the model comes from")
    fetch.add_argument("dst", metavar="DST", help="directory to leave the converted model in")
    _common(fetch, env)
    fetch.set_defaults(func=run_fetch)


def run_convert(ns: argparse.Namespace) -> int:
    from llm_runtime.models import convert

    def work() -> str:
        made = convert.convert(
            ns.src,
            ns.dst,
            dtype=ns.dtype,
            source_format=ns.source_format,
            force=ns.force,
            progress=ns.progress,
        )
        return f"converted {ns.src} -> {ns.dst} ({made.dtype}, {made.digest})"

    return _guarded("convert", work)


def run_fetch(ns: argparse.Namespace) -> int:
    from llm_runtime.models import fetch

    def work() -> str:
        got = fetch.fetch(
            ns.uri,
            ns.dst,
            dtype=ns.dtype,
            source_format=ns.source_format,
            force=ns.force,
            progress=ns.progress,
        )
        verb = "already up to date" if got.outcome is fetch.Outcome.UP_TO_DATE else "fetched"
        return f"{verb}: {ns.uri} -> {ns.dst} ({got.manifest.dtype}, {got.manifest.digest})"

    return _guarded("fetch", work)


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an error (pure, so the mapping is tested by table)."""
    if isinstance(exc, errors.UnsupportedURIError | ValueError):
        return EXIT_USAGE
    if isinstance(exc, errors.FetchError):
        return EXIT_SOURCE
    return EXIT_MODEL


def _guarded(command: str, work: Callable[[], str]) -> int:
    """Run a command: one result line on stdout, or one error line on stderr (no traceback)."""
    started = time.monotonic()
    try:
        line = work()
    except (errors.ModelError, ValueError) as exc:
        print(f"llm-runtime {command}: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    print(f"{line} in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (`python -m llm_runtime.models.cli`), same commands as `llm-runtime`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="llm-runtime-models")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    ns = parser.parse_args(argv)
    handler: Handler = ns.func
    return handler(ns)


if __name__ == "__main__":
    sys.exit(main())
