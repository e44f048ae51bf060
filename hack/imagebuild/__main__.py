"""`python -m imagebuild tools|base|build|export|names [--only NAME]` (PYTHONPATH=hack).

tools   apt-get install podman, buildah, runc and mmdebstrap where missing
base    the mmdebstrap base image (cached under $LLMOP_CACHE/images)
build   tools, base and both images; prints `REF ID SIZE SECONDS` per image
export  build, then a docker archive per image for `ctr -n k8s.io images import`;
        prints `NAME PATH` per image (NAME as Kubernetes resolves the image reference)
names   the podman and Kubernetes names of each image (builds nothing)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imagebuild import engine, recipe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imagebuild",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("tools", "base", "build", "export", "names"))
    parser.add_argument(
        "--only", action="append", choices=sorted(recipe.BY_NAME), default=[],
        help="build only this image (repeatable; default all)",
    )  # fmt: skip
    return parser


def _names(only: Sequence[str]) -> None:
    version = engine.project_version()
    for image in [recipe.BY_NAME[n] for n in only] or recipe.IMAGES:
        ref = image.ref(version)
        print(ref, recipe.podman_name(ref), recipe.kubernetes_name(ref))


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        if ns.command == "tools":
            engine.ensure_tools()
        elif ns.command == "base":
            engine.ensure_tools()
            print(engine.ensure_base(recipe.BaseRecipe(), engine.cache_dir()))
        elif ns.command == "build":
            for b in engine.build(ns.only):
                print(b.ref, b.image_id[:12], b.size, f"{b.seconds:.1f}")
        elif ns.command == "export":
            for b, path in engine.export(ns.only):
                print(recipe.kubernetes_name(b.ref), path)
            engine.log("import into containerd with: ctr -n k8s.io images import PATH")
        else:
            _names(ns.only)
    except engine.BuildError as e:
        print(f"imagebuild: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
