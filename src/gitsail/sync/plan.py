"""Sync planning: which object is applied, pruned or run as a hook, in what order.

Pure functions over desired manifests and the app's inventory. The order is Argo CD's:

    phase (PreSync → Sync → PostSync; SyncFail only on failure)
      → wave (``argocd.argoproj.io/sync-wave``, default 0; Helm ``hook-weight`` for Helm hooks)
        → kind order (Helm's install order: Namespace, …, CRDs, RBAC, Service, workloads, …;
          unknown kinds and custom resources last)
          → name

Hooks come from ``argocd.argoproj.io/hook`` or, when that is absent, from Helm's
``helm.sh/hook`` mapped as Argo CD maps it (pre-install/pre-upgrade → PreSync,
post-install/post-upgrade → PostSync, pre-delete/post-delete → PreDelete/PostDelete,
which a sync skips; test hooks and rollback hooks are not run). ``Skip`` objects are never
applied. Objects from the inventory that are no longer desired become prune tasks in the
wave they were synced in; ``PruneLast`` moves them after every wave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gitsail.model import Obj, ResourceKey

__all__ = [
    "HOOK_ANNOTATION",
    "SYNC_OPTIONS_ANNOTATION",
    "WAVE_ANNOTATION",
    "HookDeletePolicy",
    "Phase",
    "SyncOptions",
    "SyncTask",
    "TaskAction",
    "kind_rank",
    "parse_sync_options",
    "plan_tasks",
]

WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
HOOK_ANNOTATION = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY_ANNOTATION = "argocd.argoproj.io/hook-delete-policy"
SYNC_OPTIONS_ANNOTATION = "argocd.argoproj.io/sync-options"
HELM_HOOK = "helm.sh/hook"
HELM_HOOK_WEIGHT = "helm.sh/hook-weight"
HELM_HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"
HELM_RESOURCE_POLICY = "helm.sh/resource-policy"


class Phase(StrEnum):
    PreSync = "PreSync"
    Sync = "Sync"
    PostSync = "PostSync"
    SyncFail = "SyncFail"


class TaskAction(StrEnum):
    apply = "apply"
    prune = "prune"
    hook = "hook"


class HookDeletePolicy(StrEnum):
    HookSucceeded = "HookSucceeded"
    HookFailed = "HookFailed"
    BeforeHookCreation = "BeforeHookCreation"


# Helm's install order (pkg/releaseutil kind_sorter). Unknown kinds sort after all of these.
_KIND_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_KIND_RANK = {kind: i for i, kind in enumerate(_KIND_ORDER)}

_HELM_HOOK_PHASES = {
    "pre-install": "PreSync",
    "pre-upgrade": "PreSync",
    "post-install": "PostSync",
    "post-upgrade": "PostSync",
    "pre-delete": "PreDelete",
    "post-delete": "PostDelete",
}
_HELM_DELETE_POLICIES = {
    "hook-succeeded": HookDeletePolicy.HookSucceeded,
    "hook-failed": HookDeletePolicy.HookFailed,
    "before-hook-creation": HookDeletePolicy.BeforeHookCreation,
}


def kind_rank(kind: str) -> int:
    return _KIND_RANK.get(kind, len(_KIND_ORDER))


@dataclass(frozen=True)
class SyncOptions:
    """Sync options of an app (``syncPolicy.syncOptions``) or of one object (its annotation)."""

    values: Mapping[str, str] = field(default_factory=dict)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        return value.lower() == "true"

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def merged(self, other: SyncOptions) -> SyncOptions:
        """``other`` (the object's own options) wins over self (the app's)."""
        return SyncOptions({**self.values, **other.values})


def parse_sync_options(items: Iterable[str] | str | None) -> SyncOptions:
    """``["CreateNamespace=true", "PruneLast=true"]`` or ``"Prune=false,Validate=false"``."""
    if items is None:
        return SyncOptions()
    if isinstance(items, str):
        items = items.split(",")
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.strip().partition("=")
        if name:
            values[name.strip()] = value.strip() if sep else "true"
    return SyncOptions(values)


def _annotations(obj: Obj) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(str(value).strip()) if value is not None else default
    except ValueError:
        return default


def hook_types(obj: Obj) -> tuple[str, ...]:
    """The hook types an object declares (``()`` for a normal resource)."""
    ann = _annotations(obj)
    if HOOK_ANNOTATION in ann:
        return tuple(t.strip() for t in ann[HOOK_ANNOTATION].split(",") if t.strip())
    if HELM_HOOK in ann:
        mapped = [_HELM_HOOK_PHASES.get(t.strip(), "") for t in ann[HELM_HOOK].split(",")]
        if "crd-install" in ann[HELM_HOOK]:
            return ()
        # Helm test and rollback hooks have no Argo CD phase: they are skipped.
        return tuple(dict.fromkeys(m for m in mapped if m)) or ("Skip",)
    return ()


def wave_of(obj: Obj) -> int:
    ann = _annotations(obj)
    if WAVE_ANNOTATION in ann:
        return _int(ann[WAVE_ANNOTATION])
    if HELM_HOOK in ann and HOOK_ANNOTATION not in ann:
        return _int(ann.get(HELM_HOOK_WEIGHT))
    return 0


def delete_policies(obj: Obj) -> frozenset[HookDeletePolicy]:
    ann = _annotations(obj)
    raw = ann.get(HOOK_DELETE_POLICY_ANNOTATION)
    policies: set[HookDeletePolicy] = set()
    if raw is not None:
        for item in raw.split(","):
            try:
                policies.add(HookDeletePolicy(item.strip()))
            except ValueError:
                continue
    elif HELM_HOOK_DELETE_POLICY in ann:
        for item in ann[HELM_HOOK_DELETE_POLICY].split(","):
            policy = _HELM_DELETE_POLICIES.get(item.strip())
            if policy is not None:
                policies.add(policy)
    return frozenset(policies) or frozenset({HookDeletePolicy.BeforeHookCreation})


def object_sync_options(obj: Obj) -> SyncOptions:
    options = parse_sync_options(_annotations(obj).get(SYNC_OPTIONS_ANNOTATION))
    if _annotations(obj).get(HELM_RESOURCE_POLICY) == "keep":
        options = options.merged(SyncOptions({"Delete": "false", "Prune": "false"}))
    return options


@dataclass(frozen=True)
class SyncTask:
    """One step of a sync: apply or prune an object, or run a hook."""

    action: TaskAction
    phase: Phase
    wave: int
    key: ResourceKey
    api_version: str
    obj: Obj | None  # desired object (apply, hook); None for prune
    options: SyncOptions = field(default_factory=SyncOptions)
    hook_type: str = ""
    delete_policies: frozenset[HookDeletePolicy] = frozenset()

    @property
    def order(self) -> tuple[int, int, int, int, str, str]:
        phase_rank = list(Phase).index(self.phase)
        if self.action is TaskAction.prune:
            # After every apply of the phase; higher waves first; dependants before what
            # they depend on (reverse kind order).
            return (phase_rank, 1, -self.wave, -kind_rank(self.key.kind), *self._where)
        return (phase_rank, 0, self.wave, kind_rank(self.key.kind), *self._where)

    @property
    def _where(self) -> tuple[str, str]:
        return (self.key.namespace, self.key.name)


PRUNE_LAST_WAVE = 1 << 30


def plan_tasks(
    desired: Sequence[Obj],
    prune_candidates: Sequence[Obj],
    *,
    app_options: SyncOptions,
    hooks: bool = True,
) -> list[SyncTask]:
    """Order desired objects, hooks and prune candidates into sync tasks.

    ``prune_candidates`` are live objects the app owns that are no longer desired; the
    caller has already checked ownership. Hooks are left out when ``hooks`` is False
    (selective and self-heal syncs run no hooks, as in Argo CD).
    """
    tasks: list[SyncTask] = []
    for obj in desired:
        types = hook_types(obj)
        key = ResourceKey.of(obj)
        api_version = str(obj.get("apiVersion", ""))
        options = app_options.merged(object_sync_options(obj))
        if "Skip" in types:
            continue
        if not types:
            tasks.append(
                SyncTask(TaskAction.apply, Phase.Sync, wave_of(obj), key, api_version, obj, options)
            )
            continue
        if not hooks:
            continue
        for hook_type in types:
            if hook_type not in Phase.__members__:
                continue  # PreDelete/PostDelete run on app deletion, not on sync
            tasks.append(
                SyncTask(
                    TaskAction.hook,
                    Phase(hook_type),
                    wave_of(obj),
                    key,
                    api_version,
                    obj,
                    options,
                    hook_type=hook_type,
                    delete_policies=delete_policies(obj),
                )
            )
    for live in prune_candidates:
        options = app_options.merged(object_sync_options(live))
        wave = PRUNE_LAST_WAVE if options.flag("PruneLast") else wave_of(live)
        tasks.append(
            SyncTask(
                TaskAction.prune,
                Phase.Sync,
                wave,
                ResourceKey.of(live),
                str(live.get("apiVersion", "")),
                None,
                options,
            )
        )
    tasks.sort(key=lambda t: t.order)
    return tasks


def waves(tasks: Sequence[SyncTask], phase: Phase) -> list[tuple[int, list[SyncTask]]]:
    """The tasks of one phase grouped by wave, in order."""
    grouped: dict[int, list[SyncTask]] = {}
    for task in tasks:
        if task.phase is phase:
            grouped.setdefault(task.wave, []).append(task)
    return sorted(grouped.items())
