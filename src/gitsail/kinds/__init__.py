"""Kind adapters: one module per API kind parses its spec into kind-neutral records.

The stages below (source, render, sync, health) never read an Argo CD or Flux field name;
an adapter reads its object once, applies the upstream defaults and precedence, refuses what
gitsail does not implement (``UnsupportedField``, never a silent no-op) and returns frozen
records (``gitsail.kinds.records``).

Modules::

    argo_application     argoproj.io Application (v1alpha1) -> app.model.Delivery (App);
                         its status written through the engine's KindAdapter seam
    flux_gitrepository   source.toolkit.fluxcd.io GitRepository (v1, v1beta2) -> SourceRef
    flux_ocirepository   source.toolkit.fluxcd.io OCIRepository (v1, v1beta2) -> OCIRepository;
                         its reconciler pulls a layer into the ArtifactStore
    flux_source_artifact a Kustomization's non-Git source, unpacked from its artifact
    flux_kustomization   kustomize.toolkit.fluxcd.io Kustomization (v1, v1beta2)
                         -> ObjectRef + RenderSpec + SyncPolicy + HealthCheck + Dependency
    flux_substitute      postBuild variable substitution (pure)
    flux_receiver        notification.toolkit.fluxcd.io Receiver (v1) -> Receiver; its
                         webhook path and status (ReceiverReconciler)
    flux_helmrelease     helm.toolkit.fluxcd.io HelmRelease (v2, v2beta2, v2beta1) -> HelmRelease;
                         _values (valuesFrom, --set paths), _chart (its HelmChart, the
                         package), _drift, _status, _reconciler (real releases, pinned helm)
    helm_actions         helm install/upgrade/test/rollback/uninstall, hardened argv and
                         kubeconfig file; helm_storage reads Helm's release Secrets;
                         helm_postrender labels a release's objects with their owner
    status               conditions as kstatus reads them; Transient / Stalled errors
    crds/                the Flux CRDs ``gitsail install`` applies (package data)

Errors::

    ValueError
    ├── SpecError          a field is malformed: "Kustomization ns/name: spec.interval: ..."
    │   └── UnsupportedField   a Flux field gitsail does not implement yet
    └── SubstitutionError  undefined variable (strict), bad name or expression, over the limit

Usage::

    repo = parse_git_repository(obj)      # GitRepository(namespace, name, generation, source)
    ks = parse_kustomization(obj)         # Kustomization(..., source, render, sync, ...)
    values = variables(ks.render.substitute, [("ConfigMap/vars", variables_from(cm))])
    objects = substitute_objects(rendered, values)   # strict by default
"""

from gitsail.kinds.errors import SpecError, SubstitutionError, UnsupportedField
from gitsail.kinds.flux_gitrepository import GitRepository, parse_git_repository
from gitsail.kinds.flux_kustomization import Kustomization, parse_kustomization
from gitsail.kinds.flux_receiver import (
    Receiver,
    ReceiverReconciler,
    parse_receiver,
    webhook_path,
)
from gitsail.kinds.flux_substitute import (
    expand,
    substitute_objects,
    variables,
    variables_from,
)
from gitsail.kinds.records import (
    CommonMetadata,
    DeletionPolicy,
    Dependency,
    HealthCheck,
    HealthCheckExpr,
    ImageOverride,
    Include,
    ObjectRef,
    Patch,
    PatchTarget,
    RefKind,
    RenderSpec,
    RevisionRef,
    SourceRef,
    SubstituteSource,
    SyncPolicy,
)
from gitsail.kinds.status import (
    Condition,
    ReconcileError,
    Stalled,
    Transient,
    failure_conditions,
    put_condition,
    ready_conditions,
)

__all__ = [
    "CommonMetadata",
    "Condition",
    "DeletionPolicy",
    "Dependency",
    "GitRepository",
    "HealthCheck",
    "HealthCheckExpr",
    "ImageOverride",
    "Include",
    "Kustomization",
    "ObjectRef",
    "Patch",
    "PatchTarget",
    "Receiver",
    "ReceiverReconciler",
    "ReconcileError",
    "RefKind",
    "RenderSpec",
    "RevisionRef",
    "SourceRef",
    "SpecError",
    "Stalled",
    "SubstituteSource",
    "SubstitutionError",
    "SyncPolicy",
    "Transient",
    "UnsupportedField",
    "expand",
    "failure_conditions",
    "parse_git_repository",
    "parse_kustomization",
    "parse_receiver",
    "put_condition",
    "ready_conditions",
    "substitute_objects",
    "variables",
    "variables_from",
    "webhook_path",
]
