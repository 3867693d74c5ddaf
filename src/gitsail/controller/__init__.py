"""The controller: reconcilers, the work queue, and what runs beside them.

Modules (imported directly; this package imports nothing on purpose, so importing one
module never drags in the others):

- ``registry``: the kinds the controller reconciles (``KindReconciler``), work keys
  ``ObjectKey(kind, namespace, name)``, owners of managed objects, dependencies.
- ``reconciler``: the Argo CD Application kind; ``status_patch``: one status write per
  reconcile.
- ``queue``, ``manager``, ``server``: the reconcile loop and its HTTP side.
- ``webhook``: Git push webhooks (GitHub, GitLab, generic) verified and parsed, no I/O.
- ``lease``: leader election through ``coordination.k8s.io/v1`` Leases.
- ``metrics``: Prometheus metrics on a private registry, with bounded labels.
- ``events``: Kubernetes Events about Applications, aggregated like client-go does.
"""
