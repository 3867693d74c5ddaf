"""A HelmRelease's release as helm stores it: a revision a killed helm left ``pending-*`` is
unlocked (marked failed, in Helm's encoding, which the real ``helm`` still reads) and
released again; ``serviceAccountName`` makes helm act as that account, whose RBAC decides.
"""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from tests.integration.helm.releases import (
    Env,
    condition,
    env,
    hr_kube,
    package_chart,
    ready,
    redis_chart,
)

__all__ = ["env", "hr_kube"]  # fixtures

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io/v1"


async def set_status(env: Env, name: str, version: int, status: str) -> None:
    """Rewrite a storage Secret as a helm killed in the middle of an upgrade leaves it."""
    secret_name = f"sh.helm.release.v1.{name}.v{version}"
    secret = await env.kube.get("v1", "Secret", secret_name, env.ns)
    assert secret is not None
    inner = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    body = json.loads(gzip.decompress(inner))
    body["info"]["status"] = status
    encoded = base64.b64encode(gzip.compress(json.dumps(body).encode()))
    secret["data"]["release"] = base64.b64encode(encoded).decode()
    secret["metadata"]["labels"]["status"] = status
    await env.kube.replace(secret)


async def test_a_pending_release_is_unlocked_and_released_again(env: Env) -> None:
    await env.apply(env.release("locked"))
    obj = await env.installed("locked", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    # A helm upgrade killed in the middle leaves its revision pending-upgrade.
    package = env.tmp / "redis-17.0.0.tgz"
    package.write_bytes(redis_chart("17.0.0"))
    env.helm("upgrade", "locked", str(package), "-n", env.ns, "--set", "extra=interrupted")
    await set_status(env, "locked", 2, "pending-upgrade")
    assert env.helm_json("list", "-n", env.ns, "--pending")[0]["status"] == "pending-upgrade"

    await env.publish("locked", package_chart("redis", "17.1.0"), "17.1.0")
    _, obj = await env.reconcile("locked")
    assert ready(obj)["reason"] == "UpgradeSucceeded", ready(obj)
    history = env.helm_json("history", "locked", "-n", env.ns)
    # helm upgraded over the unlocked revision (and, as helm does, superseded it).
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    assert history[1]["description"] == (
        "Release pending-upgrade was interrupted; marked failed by gitsail"
    )


async def grant(env: Env, account: str, resources: list[str]) -> None:
    await env.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": env.ns},
        },
        field_manager="test",
    )
    await env.kube.apply(
        {
            "apiVersion": RBAC,
            "kind": "Role",
            "metadata": {"name": account, "namespace": env.ns},
            "rules": [{"apiGroups": ["", "apps"], "resources": resources, "verbs": ["*"]}],
        },
        field_manager="test",
    )
    await env.kube.apply(
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": env.ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": env.ns}],
        },
        field_manager="test",
    )


async def test_service_account_rbac_decides_what_helm_may_release(env: Env) -> None:
    await grant(env, "deployer", ["configmaps", "secrets"])
    await env.apply(env.release("limited", serviceAccountName="deployer"))
    obj = await env.installed("limited", redis_chart("17.0.0", configmap_only=True), "17.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    assert env.helm_json("list", "-n", env.ns)[0]["name"] == "limited"

    await env.apply(env.release("denied", serviceAccountName="deployer"))
    obj = await env.installed("denied", redis_chart("17.0.0"), "17.0.0")
    assert ready(obj)["status"] == "False"
    assert ready(obj)["reason"] == "InstallFailed"
    message = ready(obj)["message"]
    assert f'User "system:serviceaccount:{env.ns}:deployer" cannot' in message
    assert "deployments" in message
    assert condition(obj, "Stalled")["reason"] == "RetriesExceeded"
    assert await env.kube.get("apps/v1", "Deployment", "denied-app", env.ns) is None
