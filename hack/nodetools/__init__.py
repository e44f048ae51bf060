"""Builds and packs the binaries a real Kubernetes node needs (see build.sh)."""
