// The pod sandbox's pause program (no registry is reachable here, so registry.k8s.io/pause cannot
// be pulled): standard library only. Built by ../build.sh; ../ociimage.py packs it into an image.
module github.com/llm-operator/llm-operator/hack/nodetools/pause

go 1.26.0
