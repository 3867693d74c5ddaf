"""The Argo CD Application adapter: an Application becomes the engine's kind-neutral
``Delivery`` with Argo CD's defaults, and its status is written the way Argo CD writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitsail.app.engine import Comparison
from gitsail.app.model import IN_CLUSTER, Automated, Delivery, Retry, SourceRef, SyncPolicy
from gitsail.diff import diff_resource
from gitsail.kinds.argo_application import (
    API_VERSION,
    ARGO,
    NO_RESOURCES,
    App,
    AppSpecError,
    render_options,
)
from gitsail.model import Artifact, Obj, ResourceKey
from gitsail.render import HelmOptions, KustomizeOptions, Rendered, RenderError, RenderOptions
from gitsail.sync.inventory import Inventory, InventoryEntry
from gitsail.sync.ownership import ArgoTracking
from gitsail.sync.plan import parse_sync_options


def application(**spec: Any) -> Obj:
    base: dict[str, Any] = {
        "source": {"repoURL": "https://git.example/r.git", "path": "guestbook"},
        "destination": {"namespace": "prod"},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "Application",
        "metadata": {"name": "guestbook", "namespace": "argocd", "generation": 3},
        "spec": {**base, **spec},
    }


def test_a_minimal_application_gets_argo_cd_defaults() -> None:
    app = App.from_application(application())
    assert isinstance(app, Delivery)
    assert (app.api_version, app.kind, app.namespace, app.name, app.generation) == (
        API_VERSION,
        "Application",
        "argocd",
        "guestbook",
        3,
    )
    assert app.source == SourceRef(
        url="https://git.example/r.git", revision="HEAD", path="guestbook"
    )
    assert app.render == RenderOptions(app_name="guestbook", namespace="prod")
    assert app.render_problem == ""
    assert (app.destination_server, app.destination_namespace) == (IN_CLUSTER, "prod")
    assert app.policy == SyncPolicy(automated=None, retry=Retry(), options=parse_sync_options(None))
    assert app.owner == ArgoTracking("guestbook")
    assert len(app.inventory) == 0
    assert app.history_limit == 10
    assert app.ignore_differences == ()
    assert app.adapter is ARGO
    assert app.project == "default"


def test_automated_sync_gets_the_implicit_retry_limit_and_its_flags() -> None:
    app = App.from_application(
        application(
            syncPolicy={
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
                "managedNamespaceMetadata": {"labels": {"team": "a"}},
            }
        )
    )
    assert app.policy.automated == Automated(prune=True, self_heal=True, allow_empty=False)
    assert app.policy.retry == Retry(limit=5)
    assert app.policy.options == parse_sync_options(["CreateNamespace=true"])
    assert app.policy.managed_namespace_metadata == {"labels": {"team": "a"}}
    # Argo CD's own names still read the same values.
    assert (app.automated, app.retry, app.sync_options) == (
        app.policy.automated,
        app.policy.retry,
        app.policy.options,
    )


def test_an_application_outside_the_control_namespace_is_tracked_as_ns_name() -> None:
    obj = application()
    obj["metadata"]["namespace"] = "team-a"
    app = App.from_application(obj)
    assert app.owner == ArgoTracking("team-a_guestbook")
    assert app.instance == "team-a_guestbook"


def test_a_helm_repository_chart_is_a_source_with_a_chart_and_value_files() -> None:
    app = App.from_application(
        application(
            source={
                "repoURL": "https://charts.example",
                "chart": "redis",
                "targetRevision": "18.1.0",
                "helm": {"valueFiles": ["values-prod.yaml"], "releaseName": "cache"},
            }
        )
    )
    assert app.source == SourceRef(
        url="https://charts.example",
        revision="18.1.0",
        path=".",
        chart="redis",
        value_files=("values-prod.yaml",),
    )
    assert app.source.is_helm_repo
    assert app.render is not None
    assert app.render.chart == "redis"
    assert app.render.helm == HelmOptions(release_name="cache", value_files=("values-prod.yaml",))


def test_an_oci_repo_url_names_its_chart_in_its_last_segment() -> None:
    app = App.from_application(
        application(
            source={
                "repoURL": "oci://registry-1.docker.io/bitnamicharts/nginx",
                "path": ".",
                "targetRevision": "15.9.0",
            }
        )
    )
    assert app.source.url == "oci://registry-1.docker.io/bitnamicharts/nginx"
    assert app.source.chart == "nginx"
    assert app.source.is_helm_repo


def test_the_inventory_is_read_from_status_resources() -> None:
    obj = application()
    obj["status"] = {
        "resources": [
            {
                "group": "apps",
                "version": "v1",
                "kind": "Deployment",
                "namespace": "prod",
                "name": "web",
            },
            {"kind": "ConfigMap"},  # no name: never written by Argo CD, skipped
        ]
    }
    app = App.from_application(obj)
    assert list(app.inventory) == [
        InventoryEntry(ResourceKey("apps", "Deployment", "prod", "web"), "v1")
    ]


def test_unusable_render_options_are_kept_as_a_problem_not_raised() -> None:
    app = App.from_application(
        application(source={"repoURL": "https://git.example/r.git", "plugin": {"name": "cmp"}})
    )
    assert app.render is None
    assert "plugins are not supported" in app.render_problem


def test_two_tool_blocks_are_a_render_problem() -> None:
    with pytest.raises(RenderError, match="multiple application sources defined"):
        render_options(
            {"kustomize": {"namePrefix": "p-"}, "helm": {"releaseName": "r"}},
            app_name="a",
            namespace="",
        )
    assert render_options({"kustomize": {"namePrefix": "p-"}}, app_name="a", namespace="") == (
        RenderOptions(app_name="a", kustomize=KustomizeOptions(name_prefix="p-"))
    )


def test_jsonnet_argv_checks_stay_in_render_whoever_builds_the_options() -> None:
    with pytest.raises(RenderError, match=r"directory\.jsonnet\.extVars\[0\]\.name"):
        render_options(
            {"directory": {"jsonnet": {"extVars": [{"name": "--exec", "value": "x"}]}}},
            app_name="a",
            namespace="",
        )
    from gitsail.render import JsonnetVar

    with pytest.raises(RenderError, match="not a Jsonnet identifier"):
        JsonnetVar(name="a=b", value="x")


def test_a_destination_by_name_is_kept_for_the_engine_to_resolve() -> None:
    app = App.from_application(application(destination={"name": "prod-eu", "namespace": "x"}))
    assert (app.destination_server, app.destination_name) == ("", "prod-eu")
    by_server = App.from_application(
        application(destination={"server": "https://prod.example:6443/", "namespace": "x"})
    )
    assert (by_server.destination_server, by_server.destination_name) == (
        "https://prod.example:6443",
        "",
    )


def test_a_destination_with_both_name_and_server_is_refused_as_argo_does() -> None:
    with pytest.raises(AppSpecError, match="can't have both name and server defined"):
        App.from_application(application(destination={"name": "a", "server": "https://a.example"}))


def test_with_source_replaces_the_source_and_keeps_the_specs_credentials() -> None:
    obj = application()
    obj["spec"]["source"]["repoURL"] = "https://user:token@git.example/r.git"
    app = App.from_application(obj)
    rolled = ARGO.with_source(
        app, {"repoURL": "https://git.example/r.git", "path": "old", "targetRevision": "v1"}
    )
    assert rolled.source == SourceRef(
        url="https://user:token@git.example/r.git", revision="v1", path="old"
    )
    assert "token" not in str(ARGO.source_status(app))


def _comparison(app: App, manifests: tuple[Obj, ...]) -> Comparison:
    return Comparison(
        app=app,
        artifact=Artifact(
            url=app.source.url,
            revision="abc123",
            requested="HEAD",
            root=Path("/nonexistent"),
            path="guestbook",
            digest="sha256:0",
        ),
        rendered=Rendered(manifests=manifests, tool="directory", key="k"),
        desired=manifests,
        hooks=(),
        diffs=tuple(
            diff_resource(
                dict(m, metadata={"name": "c", "namespace": "prod"}),
                dict(m, metadata={"name": "c", "namespace": "prod"}),
            )
            for m in manifests
        ),
        live={},
        owned_live=(),
        health={},
    )


def test_status_after_a_comparison_clears_a_stale_comparison_error() -> None:
    obj = application()
    obj["status"] = {
        "conditions": [
            {"type": "ComparisonError", "message": "kustomize build failed"},
            {"type": "SyncError", "message": "kept"},
        ]
    }
    app = App.from_application(obj)
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    status = ARGO.status_patch(app, _comparison(app, (manifest,)))
    assert [c["type"] for c in status["conditions"]] == ["SyncError"]
    assert status["sync"]["status"] == "Synced"
    assert status["sync"]["revision"] == "abc123"
    assert status["sync"]["comparedTo"]["destination"] == {
        "server": IN_CLUSTER,
        "namespace": "prod",
    }
    assert status["sourceType"] == "Directory"


def test_status_of_an_empty_render_says_so_and_an_error_sets_sync_unknown() -> None:
    app = App.from_application(application())
    status = ARGO.status_patch(app, _comparison(app, ()))
    assert [c["type"] for c in status["conditions"]] == [NO_RESOURCES]
    failed = ARGO.status_patch(app, None, error="fetch failed: connection refused")
    assert failed["sync"] == {"status": "Unknown"}
    assert failed["conditions"][0]["type"] == "ComparisonError"
    assert failed["conditions"][0]["message"] == "fetch failed: connection refused"


def test_a_record_of_another_kind_is_not_written_as_an_application() -> None:
    app = App.from_application(application())
    other = Delivery(
        api_version="kustomize.toolkit.fluxcd.io/v1",
        kind="Kustomization",
        namespace="flux-system",
        name="apps",
        generation=1,
        source=app.source,
        render=app.render,
        destination_server="",
        destination_namespace="",
        policy=SyncPolicy(),
        owner=app.owner,
        inventory=Inventory(()),
    )
    with pytest.raises(TypeError, match="not an Argo CD Application"):
        ARGO.status_patch(other, None, error="x")
