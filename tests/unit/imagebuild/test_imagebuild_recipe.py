"""hack/imagebuild/recipe.py: the names, cache keys and command lines of the image builds.

These are the decisions a wrong guess breaks silently: an image imported under a name the kubelet
does not resolve is "not found" at pod start, a cache key that misses a field reuses a stale base,
and a build without the CA mount or the lower rlimits fails only on these machines.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from imagebuild import podrun, recipe

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("ref", "podman", "kubernetes"),
    [
        ("llm-operator/runtime:0.1.0", "localhost/llm-operator/runtime:0.1.0",
         "docker.io/llm-operator/runtime:0.1.0"),
        ("busybox:1", "localhost/busybox:1", "docker.io/library/busybox:1"),
        ("ghcr.io/acme/runtime:2", "ghcr.io/acme/runtime:2", "ghcr.io/acme/runtime:2"),
        ("registry:5000/x:1", "registry:5000/x:1", "registry:5000/x:1"),
        ("localhost/x:1", "localhost/x:1", "localhost/x:1"),
    ],
)  # fmt: skip
def test_names_follow_podman_and_kubernetes_normalisation(
    ref: str, podman: str, kubernetes: str
) -> None:
    assert recipe.podman_name(ref) == podman
    assert recipe.kubernetes_name(ref) == kubernetes


def test_every_base_recipe_field_changes_the_key_and_the_tag() -> None:
    base = recipe.BaseRecipe()
    assert base.key() == recipe.BaseRecipe().key()  # stable for the same inputs
    changed = [
        dataclasses.replace(base, suite="trixie"),
        dataclasses.replace(base, variant="apt"),
        dataclasses.replace(base, packages=(*base.packages, "curl")),
        dataclasses.replace(base, dpkg_options=()),
        dataclasses.replace(base, apt_options=()),
        dataclasses.replace(base, mirror="http://deb.example/debian"),
        dataclasses.replace(base, changes=()),
    ]
    keys = {base.key(), *(c.key() for c in changed)}
    assert len(keys) == len(changed) + 1
    assert base.tag.endswith(base.key()) and base.key() in base.tarball(Path("/c")).name


def test_mmdebstrap_builds_a_minbase_with_python_and_the_mirror_last() -> None:
    argv = recipe.mmdebstrap_argv(recipe.BaseRecipe(), Path("/c/base.tar"))
    assert argv[:3] == ["mmdebstrap", "--quiet", "--variant=minbase"]
    assert "--include=python3,python3-venv,ca-certificates" in argv
    assert argv[-2:] == ["bookworm", "/c/base.tar"]
    mirrored = recipe.BaseRecipe(mirror="http://m/debian")
    assert recipe.mmdebstrap_argv(mirrored, Path("/o.tar"))[-3:] == ["bookworm", "/o.tar",
                                                                      "http://m/debian"]  # fmt: skip


def test_bud_uses_runc_host_network_lower_rlimits_and_the_mounts() -> None:
    runtime = recipe.BY_NAME["runtime"]
    mounts = recipe.Mounts(ca_bundle=Path("/etc/ssl/ca.pem"), uv_cache=Path("/root/.cache/uv"))
    argv = recipe.bud_argv(
        image=runtime, version="0.1.0", base="localhost/b:1", mounts=mounts, context=Path("/r")
    )
    assert argv[:5] == ["buildah", "bud", "--runtime=runc", "--network=host", "--layers"]
    assert argv[5:7] == ["--ulimit", "nofile=4096:4096"]
    assert f"/etc/ssl/ca.pem:{recipe.IMAGE_CA_BUNDLE}:ro" in argv
    assert f"/root/.cache/uv:{recipe.UV_CACHE_MOUNT}" in argv
    build_args = {argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"}
    assert build_args == {
        "BASE_IMAGE=localhost/b:1",
        f"TORCH_INDEX={recipe.PYPI_INDEX}",
        f"UV_CACHE_MOUNT={recipe.UV_CACHE_MOUNT}",
    }
    assert argv[-5:] == ["-f", "/r/images/runtime.Dockerfile", "-t",
                         "llm-operator/runtime:0.1.0", "/r"]  # fmt: skip


def test_bud_without_a_ca_bundle_or_cache_mounts_nothing() -> None:
    argv = recipe.bud_argv(
        image=recipe.BY_NAME["operator"],
        version="1.2.3",
        base="b",
        mounts=recipe.Mounts(ca_bundle=None, uv_cache=None),
        context=Path("/r"),
    )
    assert "-v" not in argv
    assert [a for a in argv if a.startswith("UV_CACHE_MOUNT")] == []


def test_archives_are_keyed_by_image_id_and_only_older_builds_are_stale() -> None:
    runtime = recipe.BY_NAME["runtime"]
    keep = recipe.archive_path(Path("/c"), image=runtime, version="0.1.0", image_id="a" * 64)
    assert keep == Path("/c/images/archives/runtime-0.1.0-aaaaaaaaaaaa.tar")
    found = [
        keep,
        keep.with_name("runtime-0.1.0-bbbbbbbbbbbb.tar"),
        keep.with_name("runtime-0.2.0-cccccccccccc.tar"),
        keep.with_name("operator-0.1.0-dddddddddddd.tar"),
    ]
    assert recipe.stale_archives(found, keep=keep) == [found[1]]


def test_containers_run_as_the_pods_do() -> None:
    argv = podrun.hardened_argv(network="none", volumes=["/v:/models"], env={"A": "1"})
    for flag in ("--read-only", "--user=65532:65532", "--cap-drop=ALL",
                 "--security-opt=no-new-privileges", "--runtime=runc", "--read-only-tmpfs=false",
                 "--volume=/v:/models", "--env=A=1", "--network=none"):  # fmt: skip
        assert flag in argv, flag
    assert any(a.startswith("--tmpfs=/tmp:") for a in argv)
