"""Kind-neutral records: what a kind adapter hands to the stages below it.

An adapter (``flux_gitrepository``, ``flux_kustomization``, later ``argo_application``) reads
its API object once, applies the upstream defaults and precedence, refuses what gitsail does
not implement, and returns these frozen records. Stages below (source, render, sync, health)
read only these records, never a Flux or Argo field name.

Conventions: durations are seconds (``float``); maps are sorted ``(key, value)`` tuples so
every record is hashable and can key a cache; ``None`` means "not set" where the upstream API
distinguishes it from an empty value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CommonMetadata",
    "DeletionPolicy",
    "Dependency",
    "HealthCheck",
    "HealthCheckExpr",
    "ImageOverride",
    "Include",
    "ObjectRef",
    "Patch",
    "PatchTarget",
    "RefKind",
    "RenderSpec",
    "RevisionRef",
    "SourceRef",
    "SubstituteSource",
    "SyncPolicy",
]


class RefKind(enum.Enum):
    """What a ``RevisionRef`` names, in Flux's order of precedence (first wins)."""

    COMMIT = "commit"  # a full SHA; may come with the branch that contains it
    NAME = "name"  # a full reference name: refs/heads/main, refs/pull/1/head
    SEMVER = "semver"  # a semver range matched against tags
    TAG = "tag"
    BRANCH = "branch"


@dataclass(frozen=True)
class RevisionRef:
    """The one reference a source resolves. ``branch`` is only set with ``COMMIT`` (Flux
    clones that branch and checks the commit out of it)."""

    kind: RefKind
    value: str
    branch: str | None = None


@dataclass(frozen=True)
class Include:
    """Another source's artifact copied into this one (``GitRepository.spec.include``)."""

    repository: str  # a GitRepository in the same namespace
    from_path: str  # "" is the included artifact's root
    to_path: str  # defaults to the repository's name


@dataclass(frozen=True)
class SourceRef:
    """Where manifests come from and how often to look: a Git repository at a reference."""

    kind: str  # "GitRepository"
    url: str  # https://, ssh:// or file://
    ref: RevisionRef
    secret_ref: str | None  # a Secret in the object's namespace (basic auth, bearer, SSH)
    interval: float
    timeout: float  # for each git operation
    ignore: str | None  # .gitignore-format rules; None keeps the default exclusions
    include: tuple[Include, ...] = ()
    suspend: bool = False


@dataclass(frozen=True)
class ObjectRef:
    """A reference to another API object; ``namespace`` is already defaulted."""

    kind: str
    name: str
    namespace: str | None
    api_version: str | None = None


@dataclass(frozen=True)
class ImageOverride:
    """Kustomize's ``images`` entry: rename, retag or pin a container image."""

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class PatchTarget:
    """Which objects a patch applies to (kustomize's selector); ``None`` fields match all."""

    group: str | None = None
    version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    label_selector: str | None = None
    annotation_selector: str | None = None


@dataclass(frozen=True)
class Patch:
    """An inline strategic-merge or JSON 6902 patch (YAML text) and its target."""

    patch: str
    target: PatchTarget | None = None


@dataclass(frozen=True)
class CommonMetadata:
    """Labels and annotations set on every rendered object (override existing keys)."""

    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SubstituteSource:
    """A ConfigMap or Secret (in the object's namespace) whose data keys are variables."""

    kind: str  # "ConfigMap" | "Secret"
    name: str
    optional: bool = False  # a missing object counts as empty instead of failing


@dataclass(frozen=True)
class RenderSpec:
    """How to turn an artifact's directory into manifests (kustomize, then substitution)."""

    path: str  # relative to the artifact's root, "" for the root
    target_namespace: str | None = None
    name_prefix: str | None = None
    name_suffix: str | None = None
    images: tuple[ImageOverride, ...] = ()
    patches: tuple[Patch, ...] = ()
    components: tuple[str, ...] = ()
    ignore_missing_components: bool = False
    common_metadata: CommonMetadata | None = None
    substitute: tuple[tuple[str, str], ...] = ()
    substitute_from: tuple[SubstituteSource, ...] = ()
    # Flux substitutes only when postBuild defines at least one variable or source.
    substitution: bool = False


class DeletionPolicy(enum.Enum):
    MIRROR_PRUNE = "MirrorPrune"  # delete what is owned when prune is on, orphan otherwise
    DELETE = "Delete"
    WAIT_FOR_TERMINATION = "WaitForTermination"
    ORPHAN = "Orphan"


@dataclass(frozen=True)
class SyncPolicy:
    """When and how to apply: the loop's timing, pruning, waiting and forcing."""

    prune: bool
    interval: float
    retry_interval: float  # after a failure; defaults to interval
    timeout: float  # for one reconcile's build, apply and health wait; defaults to interval
    wait: bool = False  # wait for every applied object to be healthy
    force: bool = False  # recreate objects whose immutable fields changed
    deletion_policy: DeletionPolicy = DeletionPolicy.MIRROR_PRUNE
    suspend: bool = False
    service_account_name: str | None = None  # impersonated while applying


@dataclass(frozen=True)
class HealthCheck:
    """An object that must be healthy for the delivery to be Ready. ``api_version`` may be
    unknown (Flux allows leaving it out: the kind is looked up); ``namespace`` ``None`` is
    a cluster-scoped object."""

    api_version: str | None
    kind: str
    name: str
    namespace: str | None


@dataclass(frozen=True)
class HealthCheckExpr:
    """CEL expressions that decide a custom kind's health (Flux ``healthCheckExprs``)."""

    api_version: str
    kind: str
    current: str
    in_progress: str | None = None
    failed: str | None = None


@dataclass(frozen=True)
class Dependency:
    """Another delivery that must be Ready first (any kind gitsail reconciles)."""

    kind: str  # "Kustomization" | "Application"
    namespace: str
    name: str
    ready_expr: str | None = None  # CEL over ``dep`` and ``self``, replacing the Ready check
