from typing import Any

from gitsail.sync.plan import (
    HookDeletePolicy,
    Phase,
    TaskAction,
    hook_types,
    parse_sync_options,
    plan_tasks,
)


def obj(kind: str, name: str, api: str = "v1", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "annotations": dict(annotations)},
    }


def order(tasks: list[Any]) -> list[str]:
    return [f"{t.action}:{t.phase}:{t.wave}:{t.key.kind}/{t.key.name}" for t in tasks]


def test_waves_then_kind_order_then_name() -> None:
    desired = [
        obj("Deployment", "web", "apps/v1"),
        obj("ConfigMap", "late", **{"argocd.argoproj.io/sync-wave": "1"}),
        obj("Service", "web"),
        obj("Namespace", "ns"),
        obj("ConfigMap", "early", **{"argocd.argoproj.io/sync-wave": "-1"}),
        obj("Widget", "w", "example.com/v1"),
        obj("CustomResourceDefinition", "widgets", "apiextensions.k8s.io/v1"),
    ]
    tasks = plan_tasks(desired, [], app_options=parse_sync_options(None))
    assert order(tasks) == [
        "apply:Sync:-1:ConfigMap/early",
        "apply:Sync:0:Namespace/ns",
        "apply:Sync:0:CustomResourceDefinition/widgets",
        "apply:Sync:0:Service/web",
        "apply:Sync:0:Deployment/web",
        "apply:Sync:0:Widget/w",
        "apply:Sync:1:ConfigMap/late",
    ]


def test_hooks_go_to_their_phase_with_before_hook_creation_by_default() -> None:
    desired = [
        obj("Job", "migrate", "batch/v1", **{"argocd.argoproj.io/hook": "PreSync"}),
        obj(
            "Job",
            "smoke",
            "batch/v1",
            **{
                "argocd.argoproj.io/hook": "PostSync",
                "argocd.argoproj.io/hook-delete-policy": "HookSucceeded",
            },
        ),
        obj("ConfigMap", "app"),
        obj("Pod", "never", **{"argocd.argoproj.io/hook": "Skip"}),
    ]
    tasks = plan_tasks(desired, [], app_options=parse_sync_options(None))
    assert [(t.phase, t.key.name, t.action) for t in tasks] == [
        (Phase.PreSync, "migrate", TaskAction.hook),
        (Phase.Sync, "app", TaskAction.apply),
        (Phase.PostSync, "smoke", TaskAction.hook),
    ]
    assert tasks[0].delete_policies == {HookDeletePolicy.BeforeHookCreation}
    assert tasks[2].delete_policies == {HookDeletePolicy.HookSucceeded}


def test_helm_hooks_are_mapped_as_argo_cd_maps_them() -> None:
    pre = obj(
        "Job",
        "a",
        "batch/v1",
        **{
            "helm.sh/hook": "pre-install,pre-upgrade",
            "helm.sh/hook-weight": "-5",
            "helm.sh/hook-delete-policy": "hook-succeeded",
        },
    )
    post = obj("Job", "b", "batch/v1", **{"helm.sh/hook": "post-install"})
    test = obj("Pod", "t", **{"helm.sh/hook": "test"})
    assert hook_types(pre) == ("PreSync",)
    assert hook_types(post) == ("PostSync",)
    assert hook_types(test) == ("Skip",)
    tasks = plan_tasks([pre, post, test], [], app_options=parse_sync_options(None))
    assert [(t.phase, t.wave, t.key.name) for t in tasks] == [
        (Phase.PreSync, -5, "a"),
        (Phase.PostSync, 0, "b"),
    ]
    assert tasks[0].delete_policies == {HookDeletePolicy.HookSucceeded}


def test_argo_hook_annotation_wins_over_helm_hook() -> None:
    both = obj(
        "Job",
        "a",
        "batch/v1",
        **{"helm.sh/hook": "post-install", "argocd.argoproj.io/hook": "Sync"},
    )
    assert hook_types(both) == ("Sync",)


def test_prunes_come_after_applies_higher_waves_first() -> None:
    live = [
        obj("Deployment", "old", "apps/v1", **{"argocd.argoproj.io/sync-wave": "1"}),
        obj("ConfigMap", "old-config"),
        obj("Service", "old-svc", **{"argocd.argoproj.io/sync-wave": "1"}),
    ]
    tasks = plan_tasks([obj("ConfigMap", "new")], live, app_options=parse_sync_options(None))
    assert order(tasks) == [
        "apply:Sync:0:ConfigMap/new",
        "prune:Sync:1:Deployment/old",
        "prune:Sync:1:Service/old-svc",
        "prune:Sync:0:ConfigMap/old-config",
    ]


def test_object_sync_options_override_the_apps() -> None:
    app_options = parse_sync_options(["Prune=true", "Validate=true"])
    live = [obj("ConfigMap", "keep", **{"argocd.argoproj.io/sync-options": "Prune=false"})]
    (task,) = plan_tasks([], live, app_options=app_options)
    assert task.options.get("Prune") == "false"
    assert task.options.get("Validate") == "true"


def test_helm_resource_policy_keep_means_never_prune() -> None:
    live = [obj("PersistentVolumeClaim", "data", **{"helm.sh/resource-policy": "keep"})]
    (task,) = plan_tasks([], live, app_options=parse_sync_options(None))
    assert task.options.get("Prune") == "false"


def test_selective_and_self_heal_syncs_run_no_hooks() -> None:
    desired = [
        obj("Job", "j", "batch/v1", **{"argocd.argoproj.io/hook": "PreSync"}),
        obj("ConfigMap", "c"),
    ]
    tasks = plan_tasks(desired, [], app_options=parse_sync_options(None), hooks=False)
    assert [t.key.name for t in tasks] == ["c"]


def test_sync_options_parse_both_list_and_annotation_forms() -> None:
    assert parse_sync_options(["CreateNamespace=true", "PruneLast=true"]).flag("PruneLast")
    parsed = parse_sync_options("Prune=false, Validate=false")
    assert parsed.get("Validate") == "false"
    assert not parsed.flag("Prune", default=True)
