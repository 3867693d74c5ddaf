"""``ClusterExternalSecret``: one ExternalSecret in every namespace its selectors pick.

Each pass lists the namespaces, keeps those matched by ``namespaces``,
``namespaceSelectors`` (any) or the legacy ``namespaceSelector``, applies the ExternalSecret
``externalSecretName`` (default: the object's name) with ``externalSecretSpec`` and
``externalSecretMetadata`` there (server-side apply, owner reference to the
ClusterExternalSecret, label ``external-secrets.io/cluster-external-secret-name``), and
deletes the ExternalSecrets it made in namespaces no longer matched. It only deletes objects
carrying its own owner reference. Status as ESO writes it: ``Ready``,
``provisionedNamespaces``, ``failedNamespaces``, ``externalSecretName``. Runs again after
``refreshTime`` (default 1m) so new namespaces are picked up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gitsail.kinds._fields import go_duration
from gitsail.kube import Kube, KubeError
from gitsail.model import Obj
from gitsail.secrets.external.provider import ProviderError
from gitsail.secrets.external.stores import selector_matches

__all__ = ["LABEL_OWNER", "ClusterExternalSecretReconciler"]

LABEL_OWNER = "external-secrets.io/cluster-external-secret-name"
API = "external-secrets.io/v1"
MANAGER = "externalsecrets.external-secrets.io"


class ClusterExternalSecretReconciler:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def reconcile(self, obj: Obj) -> float | None:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        name = str(meta.get("name"))
        es_name = str(spec.get("externalSecretName") or name)
        refresh = go_duration(str(spec.get("refreshTime") or "1m")) or 60.0
        failed: list[dict[str, str]] = []
        provisioned: list[str] = []
        error = ""
        try:
            namespaces = await self.kube.list("v1", "Namespace")
            wanted = [
                str(n["metadata"]["name"])
                for n in namespaces
                if self._matches(
                    spec, str(n["metadata"]["name"]), n["metadata"].get("labels") or {}
                )
            ]
        except (KubeError, ProviderError) as exc:
            wanted, error = [], str(exc)
        es_meta = spec.get("externalSecretMetadata") or {}
        for ns in sorted(wanted):
            desired: Obj = {
                "apiVersion": API,
                "kind": "ExternalSecret",
                "metadata": {
                    "name": es_name,
                    "namespace": ns,
                    "labels": {**(es_meta.get("labels") or {}), LABEL_OWNER: name},
                    "annotations": dict(es_meta.get("annotations") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": str(obj.get("apiVersion") or API),
                            "kind": "ClusterExternalSecret",
                            "name": name,
                            "uid": str(meta.get("uid") or ""),
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": spec.get("externalSecretSpec") or {},
            }
            try:
                await self.kube.apply(desired, field_manager=MANAGER, force=True)
                provisioned.append(ns)
            except KubeError as exc:
                failed.append({"namespace": ns, "reason": str(exc)[:300]})
        try:
            for es in await self.kube.list(
                API, "ExternalSecret", label_selector=f"{LABEL_OWNER}={name}"
            ):
                emeta = es.get("metadata") or {}
                mine = any(
                    r.get("uid") == meta.get("uid") for r in emeta.get("ownerReferences") or []
                )
                if mine and emeta.get("namespace") not in wanted:
                    await self.kube.delete(
                        API, "ExternalSecret", str(emeta.get("name")), str(emeta.get("namespace"))
                    )
        except KubeError as exc:
            error = error or str(exc)
        ready = "False" if (failed or error) else "True"
        status: dict[str, Any] = {
            "externalSecretName": es_name,
            "provisionedNamespaces": provisioned,
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "message": error or ("one or more namespaces failed" if failed else ""),
                    "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        }
        if failed:
            status["failedNamespaces"] = failed
        old = obj.get("status") or {}
        old_cond = (old.get("conditions") or [{}])[0]
        if old_cond.get("status") == ready:
            status["conditions"][0]["lastTransitionTime"] = old_cond.get("lastTransitionTime")
        if status != old:
            await self.kube.merge_patch(
                API,
                "ClusterExternalSecret",
                name,
                {"status": status},
                subresource="status",
                field_manager=MANAGER,
            )
        return refresh

    @staticmethod
    def _matches(spec: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
        if namespace in (spec.get("namespaces") or []):
            return True
        selectors = list(spec.get("namespaceSelectors") or [])
        if spec.get("namespaceSelector"):
            selectors.append(spec["namespaceSelector"])
        return any(selector_matches(s, labels) for s in selectors if isinstance(s, dict))
