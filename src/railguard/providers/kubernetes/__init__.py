"""The Kubernetes runtime: an environment is a namespace, a service a Deployment, the edge an Ingress.

Pure parts: :mod:`.manifests` (resources to manifests), :mod:`.labels` (names and labels every object
carries), :mod:`.openapi` (unknown-field validation against the server's schema). Parts that talk to a
cluster: :mod:`.cluster` (kubeconfig, client, API errors as diagnostics), :mod:`.rollout` (waiting on a
Deployment, pods' reasons), :mod:`.observe` (live objects back to observed resources, drift) and
:mod:`.provider` (the :class:`~railguard.providers.base.Provider`). Only
:mod:`railguard.providers.registry` imports this package.
"""
