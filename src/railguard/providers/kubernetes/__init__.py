"""The Kubernetes runtime: an environment is a namespace, a service a Deployment, the edge an Ingress.

Pure parts: :mod:`.manifests` (resources to manifests), :mod:`.labels` (names and labels every object
carries), :mod:`.openapi` (unknown-field validation against the server's schema). Parts that talk to a
cluster: :mod:`.cluster` (kubeconfig, client, API errors as diagnostics), :mod:`.checks` (whose namespace it
is, and the dry-run before anything is sent), :mod:`.preview` (the plan's server-side dry-run),
:mod:`.rollout` (waiting on a Job and a Deployment, pods' reasons), :mod:`.observe` (live objects back to
observed resources, drift), :mod:`.views` (describe, events as logs, restarts) and :mod:`.provider` (the
:class:`~railguard.providers.base.Provider`). :mod:`.artifacts` and :mod:`.rbac` (how code reaches a pod, what
Railguard may do) are used by the registry and the CLI. Only :mod:`railguard.providers.registry` imports the
provider.
"""
