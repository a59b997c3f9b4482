"""The Kubernetes runtime: an environment whose target is a namespace of a cluster (docs/kubernetes.md)."""
