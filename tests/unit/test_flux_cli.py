"""The pure parts of Flux's verbs: table rows from status, when a reconcile counts as
handled, and tables that stay whole when piped; what ``diff kustomization`` reports from dry
runs on an in-memory cluster, how it prints it, and the ``tree kustomization`` walk."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from gitsail.cli.flux import (
    APPLIERS,
    GIT_REPOSITORY,
    HELM_CHART,
    HELM_RELEASE,
    HELM_REPOSITORY,
    KUSTOMIZATION,
    OCI_REPOSITORY,
    SOURCES,
    FluxKind,
    _handled,
    _row,
)
from gitsail.cli.kindget import print_rows
from gitsail.diff import diff_resource
from gitsail.kinds.flux_inspect import (
    ObjectChange,
    compare_build,
    field_changes,
    managed_tree,
    render_changes,
)
from gitsail.kinds.flux_kustomization import Kustomization, parse_kustomization
from gitsail.kube import KubeError, NotFoundKind
from gitsail.kube.discovery import ResourceInfo
from gitsail.model import Obj, ResourceKey
from gitsail.sync import Inventory


def obj(status: dict[str, object], suspend: bool | None = None) -> Obj:
    spec = {} if suspend is None else {"suspend": suspend}
    return {"metadata": {"name": "web", "namespace": "flux-system"}, "spec": spec, "status": status}


def ready(status: str, message: str = "m") -> dict[str, str]:
    return {"type": "Ready", "status": status, "message": message}


def test_rows_read_the_revision_of_each_kind_and_ready_from_conditions() -> None:
    repo = obj({"artifact": {"revision": "main@sha1:abc"}, "conditions": [ready("True", "ok")]})
    assert _row(GIT_REPOSITORY, repo) == {
        "namespace": "flux-system",
        "name": "web",
        "revision": "main@sha1:abc",
        "suspended": "False",
        "ready": "True",
        "message": "ok",
    }
    ks = obj({"lastAppliedRevision": "main@sha1:def"}, suspend=True)
    row = _row(KUSTOMIZATION, ks)
    assert (row["revision"], row["suspended"], row["ready"], row["message"]) == (
        "main@sha1:def",
        "True",
        "Unknown",
        "",
    )


def test_a_request_is_handled_once_its_stamp_is_reported_and_ready_is_decided() -> None:
    stamp = "2026-12-02T04:30:00.5Z"
    assert _handled(obj({"conditions": [ready("True")]}), stamp) is None
    old = obj({"lastHandledReconcileAt": "earlier", "conditions": [ready("True")]})
    assert _handled(old, stamp) is None
    deciding = obj({"lastHandledReconcileAt": stamp, "conditions": [ready("Unknown")]})
    assert _handled(deciding, stamp) is None
    assert (
        _handled(obj({"lastHandledReconcileAt": stamp, "conditions": [ready("False")]}), stamp)
        == "False"
    )
    assert (
        _handled(obj({"lastHandledReconcileAt": stamp, "conditions": [ready("True")]}), stamp)
        == "True"
    )


def test_a_piped_table_is_never_cut_and_markup_is_shown_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = "[bold]not markup[/bold] " + "x" * 300
    print_rows([{"name": "web", "message": message}], ("name", "message"))
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "MESSAGE"]
    assert line.split(maxsplit=1) == ["web", message]


# -- diff kustomization and tree kustomization ----------------------------------------------


class FakeKube:
    """The part of ``Kube`` the diff and tree read: discovery, get, and apply (dry run only;
    a real write fails the test)."""

    def __init__(self, *objs: Obj, failing: frozenset[str] = frozenset()) -> None:
        self.objs = {self._key(o): copy.deepcopy(o) for o in objs}
        self.failing = failing  # names whose dry run the server refuses
        self.dry_runs: list[Obj] = []

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return (obj["kind"], meta.get("namespace") or "", meta["name"])

    async def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        if kind == "Widget":
            raise NotFoundKind(f"{api_version} {kind} is not served")
        group = api_version.rpartition("/")[0]
        namespaced = kind != "Namespace"
        return ResourceInfo(
            group, "v1", kind, kind.lower() + "s", namespaced, frozenset(), frozenset()
        )

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> Obj | None:
        return copy.deepcopy(self.objs.get((kind, namespace or "", name)))

    async def apply(self, obj: Obj, *, field_manager: str, force: bool, dry_run: bool) -> Obj:
        assert dry_run, "the diff must never write"
        assert (field_manager, force) == ("kustomize-controller", True)
        self.dry_runs.append(obj)
        if obj["metadata"]["name"] in self.failing:
            raise KubeError(422, "Invalid", "field is immutable")
        live = self.objs.get(self._key(obj)) or {}
        merged = copy.deepcopy(live)
        for field, value in obj.items():
            if isinstance(value, dict):
                merged[field] = {**merged.get(field, {}), **value}
            else:
                merged[field] = value
        return merged


def ks(prune: bool = True) -> Kustomization:
    return parse_kustomization(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system", "generation": 1},
            "spec": {
                "interval": "10m",
                "prune": prune,
                "targetNamespace": "web",
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
            },
        }
    )


OWNER_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": "apps",
    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
}


def configmap(name: str, *, namespace: str = "", labels: bool = False, **data: str) -> Obj:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(OWNER_LABELS)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


def annotated(obj: Obj, key: str, value: str) -> Obj:
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("annotations", {})[key] = value
    return obj


async def test_diff_reports_drift_creation_and_pruning_from_dry_runs() -> None:
    live_a = configmap("a", namespace="web", labels=True, color="green")
    live_gone = configmap("gone", namespace="web", labels=True)
    kube = FakeKube(live_a, live_gone)
    inventory = Inventory.of([live_a, live_gone])

    changes = await compare_build(
        kube,  # type: ignore[arg-type]
        ks(),
        inventory,
        [configmap("a", color="blue"), configmap("new", x="1")],
    )

    assert [c.to_dict() for c in changes] == [
        {
            "object": "ConfigMap/web/a",
            "action": "drifted",
            "fields": [{"path": "data.color", "live": "green", "desired": "blue"}],
        },
        {"object": "ConfigMap/web/new", "action": "created"},
        {"object": "ConfigMap/web/gone", "action": "deleted"},
    ]
    # Prepared as the sync stage applies: the target namespace and the owner's labels.
    assert kube.dry_runs[0]["metadata"] == {
        "name": "a",
        "namespace": "web",
        "labels": OWNER_LABELS,
    }


async def test_an_unchanged_build_has_no_changes() -> None:
    live = configmap("a", namespace="web", labels=True, color="blue")
    kube = FakeKube(live)
    changes = await compare_build(
        kube,  # type: ignore[arg-type]
        ks(),
        Inventory.of([live]),
        [configmap("a", color="blue")],
    )
    assert changes == []


async def test_deleted_needs_prune_a_live_object_and_no_prune_disabled() -> None:
    gone = configmap("gone", namespace="web", labels=True)
    kept = annotated(
        configmap("kept", namespace="web", labels=True),
        "kustomize.toolkit.fluxcd.io/prune",
        "disabled",
    )
    vanished = configmap("vanished", namespace="web")
    inventory = Inventory.of([gone, kept, vanished])
    kube = FakeKube(gone, kept)

    with_prune = await compare_build(kube, ks(), inventory, [])  # type: ignore[arg-type]
    without = await compare_build(kube, ks(prune=False), inventory, [])  # type: ignore[arg-type]

    assert [c.object for c in with_prune] == ["ConfigMap/web/gone"]
    assert without == []


async def test_objects_the_reconciler_skips_are_not_compared() -> None:
    live = configmap("once", namespace="web", labels=True, v="old")
    kube = FakeKube(live)
    built = [
        annotated(configmap("off", v="1"), "kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
        annotated(configmap("ign", v="1"), "kustomize.toolkit.fluxcd.io/ssa", "Ignore"),
        annotated(configmap("once", v="new"), "kustomize.toolkit.fluxcd.io/ssa", "IfNotPresent"),
    ]
    changes = await compare_build(kube, ks(), Inventory.of([live]), built)  # type: ignore[arg-type]
    assert changes == []
    assert kube.dry_runs == []


async def test_a_refused_dry_run_fails_an_existing_object_and_counts_a_new_one_as_created() -> None:
    live = configmap("old", namespace="web", labels=True)
    kube = FakeKube(live, failing=frozenset({"old", "fresh"}))
    changes = await compare_build(
        kube,  # type: ignore[arg-type]
        ks(),
        Inventory.of([live]),
        [configmap("old", v="2"), configmap("fresh")],
    )
    assert [(c.object, c.action, c.message) for c in changes] == [
        ("ConfigMap/web/old", "failed", "field is immutable"),
        ("ConfigMap/web/fresh", "created", ""),
    ]


async def test_secrets_are_masked_in_field_changes() -> None:
    def secret(value: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "web", "labels": dict(OWNER_LABELS)},
            "data": {"password": base64.b64encode(value.encode()).decode()},
        }

    kube = FakeKube(secret("live-value"))
    changes = await compare_build(
        kube,  # type: ignore[arg-type]
        ks(),
        Inventory.of([secret("x")]),
        [secret("git-value")],
    )
    [change] = changes
    assert change.action == "drifted"
    text = render_changes(changes) + repr(change.to_dict())
    for plain in ("live-value", "git-value"):
        assert plain not in text
        assert base64.b64encode(plain.encode()).decode() not in text
    [field] = change.fields
    assert field.path == "data.password"
    assert field.live != field.desired


def test_changes_render_as_flux_prints_them() -> None:
    diff = diff_resource(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "b"}]}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"hand": "made"}},
            "spec": {"template": {"spec": {"containers": [{"image": "a"}]}}},
        },
    )
    changes = [
        ObjectChange("Deployment/prod/web", "drifted", field_changes(diff)),
        ObjectChange("ConfigMap/prod/new", "created"),
        ObjectChange("Job/prod/old", "failed", message="immutable"),
    ]
    assert render_changes(changes) == (
        "► Deployment/prod/web drifted\n"
        "\n"
        "metadata.labels\n"
        "  - one entry removed:\n"
        "    hand: made\n"
        "\n"
        "spec.replicas\n"
        "  + one entry added:\n"
        "    2\n"
        "\n"
        "spec.template.spec.containers[0].image\n"
        "  ± value change\n"
        "    - a\n"
        "    + b\n"
        "\n"
        "► ConfigMap/prod/new created\n"
        "✗ Job/prod/old dry-run failed: immutable\n"
    )
    assert render_changes([]) == ""


def _ks_obj(name: str, *entries: str) -> Obj:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system"},
        "status": {"inventory": {"entries": [{"id": e, "v": "v1"} for e in entries]}},
    }


async def test_tree_expands_nested_kustomizations_and_argo_applications_and_stops_at_cycles() -> (
    None
):
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "guestbook", "namespace": "argocd"},
        "status": {
            "resources": [
                {
                    "group": "apps",
                    "version": "v1",
                    "kind": "Deployment",
                    "namespace": "gb",
                    "name": "ui",
                }
            ]
        },
    }
    kube = FakeKube(
        _ks_obj(
            "root",
            "_web__Namespace",
            "flux-system_child_kustomize.toolkit.fluxcd.io_Kustomization",
            "argocd_guestbook_argoproj.io_Application",
        ),
        _ks_obj(
            "child",
            "web_cm__ConfigMap",
            "flux-system_root_kustomize.toolkit.fluxcd.io_Kustomization",
        ),
        app,
    )
    root = ResourceKey("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "root")

    tree = await managed_tree(kube, root)  # type: ignore[arg-type]

    assert tree.lines() == [
        "Kustomization/flux-system/root",
        "├── Namespace/web",
        "├── Kustomization/flux-system/child",
        "│   ├── ConfigMap/web/cm",
        "│   └── Kustomization/flux-system/root",
        "└── Application/argocd/guestbook",
        "    └── Deployment/gb/ui",
    ]
    data = tree.to_dict()
    assert data["resource"] == {
        "Namespace": "flux-system",
        "Name": "root",
        "GroupKind": {"Group": "kustomize.toolkit.fluxcd.io", "Kind": "Kustomization"},
    }
    assert "resources" not in data["resources"][0]
    assert data["resources"][1]["resources"][1]["resource"]["Name"] == "root"
    assert "resources" not in data["resources"][1]["resources"][1]


@pytest.mark.parametrize(
    ("flux", "status", "revision"),
    [
        (HELM_REPOSITORY, {"artifact": {"revision": "sha256:abc"}}, "sha256:abc"),
        (HELM_CHART, {"artifact": {"revision": "17.3.2"}}, "17.3.2"),
        (OCI_REPOSITORY, {"artifact": {"revision": "v1@sha256:def"}}, "v1@sha256:def"),
        (HELM_RELEASE, {"history": [{"chartVersion": "17.3.2"}, {"chartVersion": "17.0.0"}],
                        "lastAttemptedRevision": "17.4.0"}, "17.3.2"),
        (HELM_RELEASE, {"lastAttemptedRevision": "17.4.0"}, "17.4.0"),
        (HELM_RELEASE, {"history": "broken"}, ""),
        (HELM_CHART, {"artifact": "broken"}, ""),
        (KUSTOMIZATION, {"lastAppliedRevision": "main@sha1:1"}, "main@sha1:1"),
    ],
)  # fmt: skip
def test_the_revision_column_of_each_kind(flux: FluxKind, status: Obj, revision: str) -> None:
    obj = {"metadata": {"name": "x", "namespace": "ns"}, "status": status}
    assert _row(flux, obj)["revision"] == revision


def test_every_kind_has_its_flux_nouns() -> None:
    assert [s.word for s in SOURCES] == ["git", "helm", "chart", "oci"]
    assert [(a.plural, a.aliases) for a in APPLIERS] == [
        ("kustomizations", ("kustomization", "ks")),
        ("helmreleases", ("helmrelease", "hr")),
    ]
