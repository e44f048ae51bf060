"""Model URIs, the up-to-date decision, exit codes and the CLI's behaviour on bad sources.

The CLI cases run the real command in a subprocess: a user sees its exit status and stderr."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_runtime import models
from llm_runtime.models import builtin, cli, errors, fetch, manifest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/models/x.gguf", fetch.Source("/models/x.gguf", "file", path=Path("/models/x.gguf"))),
        ("file:///models/m", fetch.Source("file:///models/m", "file", path=Path("/models/m"))),
        ("file://localhost/a%20b", fetch.Source("file://localhost/a%20b", "file", Path("/a b"))),
        (
            "hf://HuggingFaceTB/SmolLM2-135M-Instruct@v1.0",
            fetch.Source(
                "hf://HuggingFaceTB/SmolLM2-135M-Instruct@v1.0",
                "hf",
                repo_id="HuggingFaceTB/SmolLM2-135M-Instruct",
                revision="v1.0",
                name="HuggingFaceTB/SmolLM2-135M-Instruct",
            ),
        ),
        (
            "hf://org/name",
            fetch.Source("hf://org/name", "hf", None, "org/name", "main", "org/name"),
        ),
        (
            "hf://org/name@abc123/sub/m.Q4.gguf",
            fetch.Source(
                "hf://org/name@abc123/sub/m.Q4.gguf",
                "hf",
                repo_id="org/name",
                revision="abc123",
                name="org/name",
                filename="sub/m.Q4.gguf",
            ),
        ),
        (
            "builtin://smollm2-135m-instruct",
            fetch.Source(models.DEFAULT_MODEL_URI, "builtin", name="smollm2-135m-instruct"),
        ),
    ],
)
def test_parse_uri(uri: str, expected: fetch.Source) -> None:
    assert fetch.parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket/model", "unsupported URI scheme 's3'"),
        ("https://example.com/m.gguf", "unsupported URI scheme 'https'"),
        ("pvc://claim/path", "operator maps pvc://"),
        ("relative/path", "must be absolute"),
        ("file://otherhost/x", "must be local"),
        ("hf://just-a-name", r"expected hf://org/name\[@revision\]"),
        ("hf://a/b/c", "expected hf://org/name"),
        ("hf://a/b/weights.bin", "expected hf://org/name"),
        ("hf://a@x/b", "expected hf://org/name"),
        ("builtin://", "name the builtin model"),
        ("  ", "empty model URI"),
    ],
)
def test_bad_uris_are_rejected_with_a_reason(uri: str, message: str) -> None:
    with pytest.raises(errors.UnsupportedURIError, match=message):
        fetch.parse_uri(uri)


def _manifest(*, dtype: str, source_sha: str, digest_files: str = "1") -> manifest.Manifest:
    files = {"a": manifest.FileEntry(sha256=digest_files, size=1)}
    return manifest.Manifest(
        name="n",
        dtype=dtype,
        source=manifest.SourceInfo(uri="u", format="gguf", sha256=source_sha),
        files=files,
        digest=manifest.files_digest(files),
    )


def test_up_to_date_needs_same_source_bytes_and_dtype() -> None:
    current = _manifest(dtype="bfloat16", source_sha="sha256:s")
    assert fetch.is_up_to_date(current, source_sha256="sha256:s", dtype="bfloat16")
    assert fetch.is_up_to_date(current, source_sha256=current.digest, dtype="bfloat16")
    assert not fetch.is_up_to_date(current, source_sha256="sha256:t", dtype="bfloat16")
    assert not fetch.is_up_to_date(current, source_sha256="sha256:s", dtype="float32")
    assert not fetch.is_up_to_date(None, source_sha256="sha256:s", dtype="bfloat16")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.UnsupportedURIError("x"), cli.EXIT_USAGE),
        (ValueError("bad dtype"), cli.EXIT_USAGE),
        (errors.FetchError("offline"), cli.EXIT_SOURCE),
        (errors.ModelIntegrityError("corrupt"), cli.EXIT_MODEL),
        (errors.ModelFormatError("no model"), cli.EXIT_MODEL),
    ],
)
def test_exit_codes(exc: Exception, code: int) -> None:
    assert cli.exit_code(exc) == code


def test_default_model_is_the_packaged_smollm2_gguf() -> None:
    path = models.default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(errors.FetchError, match=r"known: builtin://smollm2-135m-instruct"):
        builtin.builtin_path("gpt-5")


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="llm-runtime")
    cli.register(parser.add_subparsers(dest="command"), env={})
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_help_explains_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    fetch_help = _help("fetch", capsys)
    convert_help = _help("convert", capsys)
    for text in ("builtin://smollm2-135m-instruct", "hf://org/name", "Idempotent", "exit codes"):
        assert text in fetch_help
    for text in ("--dtype", "llm-manifest.json", "LLM_RUNTIME_CONVERT_DTYPE"):
        assert text in convert_help


def test_dtype_default_comes_from_the_environment() -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"), env={cli.DTYPE_ENV: "fp32"})
    ns = parser.parse_args(["fetch", "builtin://x", "/tmp/x"])
    assert ns.dtype == "fp32"


def _run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "runtime"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "llm_runtime.models.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hf_fetch_offline_fails_with_one_clear_line(tmp_path: Path) -> None:
    done = _run_cli(
        "fetch",
        "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main",
        str(tmp_path / "d"),
        tmp_path=tmp_path,
    )
    assert done.returncode == cli.EXIT_SOURCE
    assert (
        "llm-runtime fetch: error: could not download hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"
        in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()


def test_bad_scheme_exits_2_without_traceback(tmp_path: Path) -> None:
    done = _run_cli("fetch", "s3://bucket/model", str(tmp_path / "d"), tmp_path=tmp_path)
    assert done.returncode == cli.EXIT_USAGE
    assert "unsupported URI scheme 's3'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_and_fetch_import_no_torch(tmp_path: Path) -> None:
    """`llm-runtime --help` and an up-to-date fetch must not pay torch's import time."""
    script = (
        "import sys; import llm_runtime.models.cli, llm_runtime.models.fetch; "
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "runtime")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
