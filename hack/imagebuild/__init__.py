"""The project's images, built where no registry is reachable: `python -m imagebuild`.

A base image with Debian bookworm's python3 is made by mmdebstrap (no registry to pull
python:3.11-slim from), then `images/runtime.Dockerfile` and `images/operator.Dockerfile` are
built on it with buildah, the host's CA bundle and uv cache mounted into the build, layers cached.
`export` writes each image as a docker archive for `ctr -n k8s.io images import`.

`recipe` is pure (names, cache keys, command lines: tested with plain asserts); `engine` runs
the commands; `__main__` is the command line (`hack/imagebuild/build.sh` is its shell entry).
"""
