"""ClusterExternalSecret: one ExternalSecret per selected namespace; only its own are deleted."""

from __future__ import annotations

import copy
from typing import Any

from gitsail.kinds.externalsecret_cluster import LABEL_OWNER, ClusterExternalSecretReconciler
from gitsail.model import Obj


class Fake:
    def __init__(self) -> None:
        self.namespaces = [
            {"metadata": {"name": "a", "labels": {"team": "x"}}},
            {"metadata": {"name": "b", "labels": {"team": "y"}}},
            {"metadata": {"name": "c", "labels": {}}},
        ]
        self.es: dict[tuple[str, str], Obj] = {}
        self.status: dict[str, Any] = {}

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Obj]:  # fmt: skip
        if kind == "Namespace":
            return copy.deepcopy(self.namespaces)
        return [copy.deepcopy(o) for o in self.es.values()]

    async def apply(self, obj: Obj, field_manager: str = "", force: bool = False) -> Obj:
        self.es[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = copy.deepcopy(obj)
        return obj

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        return self.es.pop((namespace, name), None) is not None

    async def merge_patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any],
                          **kw: Any) -> Obj:  # fmt: skip
        self.status = patch["status"]
        return {}


def _ces(**spec: Any) -> Obj:
    return {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": "shared", "uid": "ces-uid"},
        "spec": {"externalSecretSpec": {"secretStoreRef": {"name": "s"}}, **spec},
    }


async def test_selected_namespaces_get_the_external_secret_and_others_lose_it() -> None:
    fake = Fake()
    reconciler = ClusterExternalSecretReconciler(fake)  # type: ignore[arg-type]
    delay = await reconciler.reconcile(_ces(namespaceSelectors=[{"matchLabels": {"team": "x"}}],
                                            namespaces=["c"]))  # fmt: skip
    assert sorted(fake.es) == [("a", "shared"), ("c", "shared")]
    es = fake.es[("a", "shared")]
    assert es["metadata"]["labels"][LABEL_OWNER] == "shared"
    assert es["metadata"]["ownerReferences"][0]["uid"] == "ces-uid"
    assert fake.status["provisionedNamespaces"] == ["a", "c"]
    assert delay == 60.0
    # A foreign ExternalSecret with the same label is not deleted (no owner reference).
    fake.es[("b", "other")] = {"metadata": {"name": "other", "namespace": "b",
                                            "labels": {LABEL_OWNER: "shared"}}}  # fmt: skip
    await reconciler.reconcile(_ces(namespaces=["a"]))
    assert sorted(fake.es) == [("a", "shared"), ("b", "other")]
