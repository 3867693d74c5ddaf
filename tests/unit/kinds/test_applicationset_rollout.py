"""RollingSync: the plan of which Applications to sync, step by step, and the reconciler
requesting those syncs with automated sync turned off on the generated Applications."""

from __future__ import annotations

from typing import Any

from gitsail.kinds.argo_applicationset import LabelSelector, RolloutStep
from gitsail.kinds.argo_applicationset_rollout import plan, sync_operation, without_automated_sync
from gitsail.model import Obj
from tests.unit.kinds.test_applicationset_reconciler import FakeKube, appset, reconciler

NOW = "2026-01-01T00:00:00Z"


def step(env: str, max_update: int | str | None = None) -> RolloutStep:
    return RolloutStep(LabelSelector(match_expressions=(("env", "In", (env,)),)), max_update)


def app(name: str, env: str, sync: str = "OutOfSync", health: str = "Missing", **extra: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"env": env}},
        "status": {"sync": {"status": sync}, "health": {"status": health}},
        **extra,
    }


STEPS = [step("dev"), step("prod", max_update=1)]


def states(result: Any) -> dict[str, tuple[str, str]]:
    return {s["application"]: (s["status"], s["step"]) for s in result.statuses}


def test_the_first_step_syncs_and_later_steps_wait() -> None:
    apps = [app("d1", "dev"), app("d2", "dev"), app("p1", "prod"), app("p2", "prod")]
    result = plan(STEPS, apps, [], NOW)
    assert result.sync == ("d1", "d2")
    assert states(result) == {
        "d1": ("Pending", "1"),
        "d2": ("Pending", "1"),
        "p1": ("Waiting", "2"),
        "p2": ("Waiting", "2"),
    }
    assert not result.done


def test_the_next_step_starts_when_the_step_before_is_synced_and_healthy() -> None:
    apps = [
        app("d1", "dev", "Synced", "Healthy"),
        app("d2", "dev", "Synced", "Progressing"),
        app("p1", "prod"),
    ]
    assert plan(STEPS, apps, [], NOW).sync == ()
    apps[1] = app("d2", "dev", "Synced", "Healthy")
    assert plan(STEPS, apps, [], NOW).sync == ("p1",)


def test_max_update_bounds_the_syncs_running_at_once() -> None:
    done = [app("d1", "dev", "Synced", "Healthy")]
    running = app("p1", "prod", operation={"sync": {}})
    result = plan(STEPS, [*done, running, app("p2", "prod")], [], NOW)
    assert result.sync == ()  # p1 is syncing and maxUpdate is 1
    assert states(result)["p2"] == ("Waiting", "2")


def test_a_percentage_rounds_down_but_syncs_at_least_one() -> None:
    assert RolloutStep(LabelSelector(), "25%").limit(3) == 1
    assert RolloutStep(LabelSelector(), "50%").limit(5) == 2
    assert RolloutStep(LabelSelector(), "0%").limit(5) == 0
    assert RolloutStep(LabelSelector(), None).limit(5) == 5


def test_an_application_no_step_matches_is_never_synced() -> None:
    result = plan(STEPS, [app("x", "qa")], [], NOW)
    assert result.sync == ()
    assert result.statuses == ()
    assert result.done


def test_the_transition_time_is_kept_while_the_state_is() -> None:
    previous = [{"application": "p1", "status": "Waiting", "lastTransitionTime": "earlier"}]
    result = plan(STEPS, [app("d1", "dev"), app("p1", "prod")], previous, NOW)
    assert {s["application"]: s["lastTransitionTime"] for s in result.statuses} == {
        "d1": NOW,
        "p1": "earlier",
    }


def test_generated_apps_lose_automated_sync_and_the_operation_keeps_its_prune() -> None:
    generated = {
        "spec": {
            "source": {"targetRevision": "main"},
            "syncPolicy": {"automated": {"prune": True}, "syncOptions": ["A=1"]},
        }
    }
    assert without_automated_sync(generated)["spec"]["syncPolicy"] == {"syncOptions": ["A=1"]}
    assert sync_operation(generated)["operation"]["sync"] == {"revision": "main", "prune": True}
    assert sync_operation(generated)["operation"]["initiatedBy"]["automated"] is True


async def test_the_reconciler_requests_syncs_of_the_first_step_only() -> None:
    kube = FakeKube()
    synced: list[str] = []
    patch = kube.merge_patch

    async def merge_patch(
        api_version: str, kind: str, name: str, body: dict[str, Any], *a: Any, **k: Any
    ) -> Obj:
        if kind == "Application" and "operation" in body:
            synced.append(name)
            return {}
        return await patch(api_version, kind, name, body, *a, **k)

    kube.merge_patch = merge_patch  # type: ignore[method-assign]
    obj = appset(["development", "staging", "production"])
    obj["spec"]["template"]["metadata"]["labels"] = {"env": "{{cluster}}"}
    obj["spec"]["template"]["spec"]["syncPolicy"] = {"automated": {}}
    obj["spec"]["strategy"] = {
        "type": "RollingSync",
        "rollingSync": {
            "steps": [
                {"matchExpressions": [{"key": "env", "operator": "In", "values": ["development"]}]},
                {
                    "matchExpressions": [
                        {"key": "env", "operator": "In", "values": ["staging", "production"]}
                    ],
                    "maxUpdate": "50%",
                },
            ]
        },
    }
    delay = await reconciler(kube).reconcile(obj)
    assert synced == ["myapp-development"]
    assert "syncPolicy" not in kube.apps["myapp-development"]["spec"]
    status = kube.status_patches[-1]["status"]
    assert [(s["application"], s["status"]) for s in status["applicationStatus"]] == [
        ("myapp-development", "Pending"),
        ("myapp-production", "Waiting"),
        ("myapp-staging", "Waiting"),
    ]
    rollout = next(c for c in status["conditions"] if c["type"] == "RolloutProgressing")
    assert rollout["status"] == "True"
    assert delay == 10.0
    # development becomes Synced and Healthy: one of the two of the next step syncs.
    kube.apps["myapp-development"]["status"] = {
        "sync": {"status": "Synced"},
        "health": {"status": "Healthy"},
    }
    obj["status"] = status
    await reconciler(kube).reconcile(obj)
    assert synced == ["myapp-development", "myapp-production"]
