"""The ApplicationSet kind on the controller (``controller/argo_kinds.py``): the cluster
Secret watch feeds the clusters generator, wakes every set seen, and ends with ``stop``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

from gitsail.controller.argo_kinds import applicationset
from gitsail.controller.registry import KindContext, KindRegistry, ObjectKey
from gitsail.kube import WatchEvent
from gitsail.model import Obj
from gitsail.policy import DEFAULT_POLICY


def secret(name: str, server: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "argocd", "resourceVersion": "2"},
        "stringData": {"name": name, "server": server},
    }


class FakeKube:
    """Lists Secrets and streams watch events from a queue; lists Applications as none."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.selectors: list[str | None] = []
        self.watching = 0
        self.applied: list[Obj] = []

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        self.selectors.append(label_selector)
        return [secret("east", "https://east:6443")], "1"

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        self.watching += 1
        try:
            while True:
                yield await self.events.get()
        finally:
            self.watching -= 1

    async def list(self, api_version: str, kind: str, *args: Any, **kwargs: Any) -> list[Obj]:
        return []

    async def apply(self, obj: Obj, *args: Any, **kwargs: Any) -> Obj:
        self.applied.append(obj)
        return obj

    async def merge_patch(self, *args: Any, **kwargs: Any) -> Obj:
        return {}


def context(kube: FakeKube, woken: list[tuple[ObjectKey, str]]) -> KindContext:
    ctx = SimpleNamespace(
        kube=kube,
        engine=SimpleNamespace(git=SimpleNamespace(policy=DEFAULT_POLICY)),
        settings=SimpleNamespace(control_namespace="argocd", resync=120.0),
        enqueue=lambda key, reason: woken.append((key, reason)),
        registry=KindRegistry(),
    )
    return cast(KindContext, ctx)


SET: Obj = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "ApplicationSet",
    "metadata": {"name": "fleet", "namespace": "argocd", "uid": "u"},
    "spec": {
        "generators": [{"clusters": {}}],
        "template": {"metadata": {"name": "web-{{name}}"}, "spec": {"project": "default"}},
    },
}


async def test_cluster_secrets_feed_the_set_and_a_change_wakes_it_until_stopped() -> None:
    kube = FakeKube()
    woken: list[tuple[ObjectKey, str]] = []
    kind = applicationset(context(kube, woken))
    delay = await kind.reconcile(SET, frozenset({"startup"}))
    assert delay == 120.0  # no git generator: the controller's resync
    assert [a["metadata"]["name"] for a in kube.applied] == ["web-in-cluster", "web-east"]
    assert kube.selectors == ["argocd.argoproj.io/secret-type=cluster"]
    # Its Applications turning Ready wake it.
    registry = cast(KindRegistry, kind.ctx.registry)
    fleet = ObjectKey("ApplicationSet", "argocd", "fleet")
    assert registry.dependencies.dependencies(fleet) == {
        ObjectKey("Application", "argocd", "web-east"),
        ObjectKey("Application", "argocd", "web-in-cluster"),
    }
    kube.events.put_nowait(WatchEvent("ADDED", secret("west", "https://west:6443")))
    for _ in range(100):
        if woken:
            break
        await asyncio.sleep(0.01)
    assert woken == [(ObjectKey("ApplicationSet", "argocd", "fleet"), "cluster-secret:west")]
    await kind.stop()
    assert kube.watching == 0
    assert kind.secrets is None
