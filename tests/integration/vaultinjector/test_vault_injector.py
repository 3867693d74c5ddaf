"""The article's Vault set-up on OpenBao and its annotated Deployment, through gitsail's
injector webhook registered with the real apiserver.

- OpenBao (``bao server -dev``) gets Kubernetes auth as the article configures it, pointed at
  the dev cluster's apiserver and CA (with a reviewer ServiceAccount bound to
  ``system:auth-delegator``), and a role ``myapp`` bound to the ServiceAccount ``myapp``; a login
  with that ServiceAccount's token proves the role works (the agent image itself does not run
  on kwok's fake nodes, so this is the login the agent would make).
- ``gitsail controller --vault-injector`` registers a MutatingWebhookConfiguration of a unique
  name whose namespaceSelector matches only this test's namespaces (a label with a random
  value), so other tests on the shared cluster are never sent to it; it is deleted at teardown.
- The Deployment's pods, created by the real controller-manager's ReplicaSet, come out
  mutated as vault-k8s would; a pod without the annotation is admitted unchanged; with the
  webhook process killed, pods are still admitted (``failurePolicy: Ignore``).
- Nothing secret (the value in OpenBao, the root token, the ServiceAccount tokens) appears in
  the controller's log or in what the webhook wrote into the pods.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gitsail.dev.cluster import Cluster, free_ports
from tests.integration.helpers import Kube, eventually
from tests.integration.vaultinjector.conftest import OpenBao

ARTICLE_TEMPLATE = (
    '{{- with secret "secret/data/myapp/config" -}}\n'
    'export API_KEY="{{ .Data.data.api_key }}"\n'
    'export DB_PASSWORD="{{ .Data.data.db_password }}"\n'
    "{{- end }}\n"
)
SELECTOR_KEY = "gitsail-test/vault-injector"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
TLS_SECRET = "vault-injector-tls"


def article_deployment() -> dict[str, Any]:
    """The article's Deployment; apps/v1 requires the selector and labels it leaves out."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "myapp"},
        "spec": {
            "selector": {"matchLabels": {"app": "myapp"}},
            "template": {
                "metadata": {
                    "labels": {"app": "myapp"},
                    "annotations": {
                        "vault.hashicorp.com/agent-inject": "true",
                        "vault.hashicorp.com/role": "myapp",
                        "vault.hashicorp.com/agent-inject-secret-config": (
                            "secret/data/myapp/config"
                        ),
                        "vault.hashicorp.com/agent-inject-template-config": ARTICLE_TEMPLATE,
                    },
                },
                "spec": {
                    "serviceAccountName": "myapp",
                    "containers": [
                        {
                            "name": "myapp",
                            "image": "myapp:v1.0.0",
                            "command": [
                                "/bin/sh",
                                "-c",
                                "source /vault/secrets/config && ./start.sh",
                            ],
                        }
                    ],
                },
            },
        },
    }


def plain_pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": "myapp",
            "containers": [{"name": "app", "image": "app:1"}],
        },
    }


class InjectorProcess:
    """``gitsail controller --vault-injector`` on loopback, selecting only ``selector``."""

    def __init__(
        self, cluster: Cluster, namespace: str, selector: str, name: str, vault: str, log: Path
    ) -> None:
        http_port, https_port = free_ports(2)
        self.health = f"http://127.0.0.1:{http_port}/healthz"
        self.https_port = https_port
        self.log = log
        argv = [
            sys.executable, "-m", "gitsail", "controller", "-n", namespace, "--no-flux",
            "--kubeconfig", str(cluster.kubeconfig), "--listen", f"127.0.0.1:{http_port}",
            "--no-leader-elect", "--vault-injector",
            "--vault-injector-listen", f"127.0.0.1:{https_port}",
            "--vault-injector-namespace-selector", selector,
            "--vault-injector-name", name, "--vault-address", vault,
            "--vault-injector-tls-secret", TLS_SECRET,
        ]  # fmt: skip
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited: {self.output()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.health, timeout=1).status_code == 200
        return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def bao_call(bao: OpenBao, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with bao.client() as client:
        resp = client.request(method, f"/v1/{path}", json=body)
    assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def sa_token(kube: Kube, namespace: str, sa: str) -> str:
    review = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    token: str = review["status"]["token"]
    return token


@pytest.fixture
def labelled_namespace(kube: Kube, namespace: str) -> tuple[str, str]:
    """The test namespace, labelled with a random value only this test's webhook selects."""
    value = uuid.uuid4().hex[:12]
    resp = kube.client.patch(
        f"/api/v1/namespaces/{namespace}",
        json={"metadata": {"labels": {SELECTOR_KEY: value}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    resp.raise_for_status()
    return namespace, value


@pytest.fixture
def webhook_name(kube: Kube, labelled_namespace: tuple[str, str]) -> Iterator[str]:
    """A unique MutatingWebhookConfiguration name, deleted at teardown whatever happened."""
    name = f"gitsail-test-vaultinj-{labelled_namespace[1]}"
    yield name
    for each in (name, f"{name}-b"):
        kube.delete(f"{WEBHOOKS}/{each}")


@pytest.fixture
def reviewer_binding(kube: Kube, namespace: str) -> Iterator[str]:
    """A ServiceAccount allowed to create TokenReviews, as Vault's reviewer JWT."""
    kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vault-reviewer"}},
    )
    name = f"{namespace}-vault-reviewer"
    kube.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "vault-reviewer", "namespace": namespace}
            ],
        },
    )
    yield "vault-reviewer"
    kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")


def configure_article_vault(
    bao: OpenBao, cluster: Cluster, kube: Kube, namespace: str, reviewer: str
) -> None:
    """``vault auth enable kubernetes``, its config and the role ``myapp``, on OpenBao."""
    bao_call(bao, "POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    bao_call(
        bao,
        "POST",
        "auth/kubernetes/config",
        {
            "kubernetes_host": cluster.server,
            "kubernetes_ca_cert": cluster.pki.ca_cert.read_text(),
            "token_reviewer_jwt": sa_token(kube, namespace, reviewer),
            "disable_local_ca_jwt": True,
        },
    )
    bao_call(
        bao,
        "PUT",
        "sys/policies/acl/myapp-policy",
        {"policy": 'path "secret/data/myapp/config" { capabilities = ["read"] }'},
    )
    bao_call(
        bao,
        "POST",
        "auth/kubernetes/role/myapp",
        {
            "bound_service_account_names": ["myapp"],
            "bound_service_account_namespaces": [namespace],
            "policies": ["myapp-policy"],
            "ttl": "1h",
        },
    )


def mutated(pod: dict[str, Any]) -> bool:
    names = [c["name"] for c in pod["spec"].get("containers", [])]
    return "vault-agent" in names


def vault_config(container: dict[str, Any]) -> dict[str, Any]:
    env = {e["name"]: e.get("value") for e in container["env"]}
    result: dict[str, Any] = json.loads(base64.b64decode(env["VAULT_CONFIG"]))
    return result


@pytest.mark.timeout(300)
def test_article_deployment_is_injected_and_unannotated_pods_are_never_blocked(
    cluster: Cluster,
    kube: Kube,
    openbao: OpenBao,
    labelled_namespace: tuple[str, str],
    reviewer_binding: str,
    webhook_name: str,
    tmp_path: Path,
) -> None:
    namespace, label = labelled_namespace
    api = f"/api/v1/namespaces/{namespace}"
    kube.create(
        f"{api}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "myapp"}},
    )
    api_key, db_password = "ak-" + secrets.token_hex(16), "pw-" + secrets.token_hex(16)
    bao_call(
        openbao,
        "POST",
        "secret/data/myapp/config",
        {"data": {"api_key": api_key, "db_password": db_password}},
    )
    configure_article_vault(openbao, cluster, kube, namespace, reviewer_binding)

    # The login the agent makes with the pod's ServiceAccount token works against the dev
    # cluster's TokenReview, and the role's policy reads the article's secret.
    myapp_jwt = sa_token(kube, namespace, "myapp")
    with openbao.client(token="") as client:
        login = client.post("/v1/auth/kubernetes/login", json={"role": "myapp", "jwt": myapp_jwt})
    assert login.status_code == 200, login.text
    client_token = login.json()["auth"]["client_token"]
    assert login.json()["auth"]["metadata"]["service_account_name"] == "myapp"
    with openbao.client(token=client_token) as client:
        read = client.get("/v1/secret/data/myapp/config")
    assert read.json()["data"]["data"]["api_key"] == api_key

    name = webhook_name
    injector = InjectorProcess(
        cluster,
        namespace,
        f"{SELECTOR_KEY}={label}",
        name,
        openbao.url,
        tmp_path / "controller.log",
    )
    try:
        eventually(injector.up, timeout=90, what="controller /healthz")
        registered = eventually(lambda: kube.get(f"{WEBHOOKS}/{name}"), what="webhook config")
        (hook,) = registered["webhooks"]
        assert hook["failurePolicy"] == "Ignore"
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:")
        assert hook["namespaceSelector"] == {"matchLabels": {SELECTOR_KEY: label}}

        # The certificates are kept in the Secret: a second replica serves the same one.
        stored = eventually(lambda: kube.get(f"{api}/secrets/{TLS_SECRET}"), what="TLS Secret")
        assert base64.b64decode(stored["data"]["ca.crt"]) == base64.b64decode(
            hook["clientConfig"]["caBundle"]
        )
        second = InjectorProcess(
            cluster,
            namespace,
            f"{SELECTOR_KEY}={label}-none",  # registered for no namespace at all
            f"{name}-b",
            openbao.url,
            tmp_path / "controller-b.log",
        )
        try:
            eventually(second.up, timeout=90, what="second controller /healthz")
            eventually(lambda: kube.get(f"{WEBHOOKS}/{name}-b"), what="second webhook config")
            served = [
                ssl.get_server_certificate(("127.0.0.1", p))
                for p in (injector.https_port, second.https_port)
            ]
            assert served[0] == served[1]
            assert served[0].encode() == base64.b64decode(stored["data"]["tls.crt"])
        finally:
            second.kill()

        # The apiserver picks the configuration up within a moment: probe with dry runs.
        probe = plain_pod("probe", {"vault.hashicorp.com/agent-inject": "true",
                                    "vault.hashicorp.com/role": "myapp"})  # fmt: skip

        def probe_mutated() -> bool:
            resp = kube.client.post(f"{api}/pods", params={"dryRun": "All"}, json=probe)
            return resp.status_code == 201 and mutated(resp.json())

        eventually(probe_mutated, timeout=60, what="the apiserver calling the webhook")

        # The article's Deployment: the ReplicaSet's pods come out injected.
        kube.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", article_deployment())

        def deployment_pod() -> dict[str, Any] | None:
            pods = (kube.get(f"{api}/pods?labelSelector=app%3Dmyapp") or {}).get("items", [])
            return pods[0] if pods else None

        pod = eventually(deployment_pod, timeout=90, what="a pod of the Deployment")
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert pod["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"] == (
            "injected"
        )
        spec = pod["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["vault-agent-init"]
        assert [c["name"] for c in spec["containers"]] == ["myapp", "vault-agent"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for vol in ("home-init", "home-sidecar", "vault-secrets"):
            assert volumes[vol]["emptyDir"] == {"medium": "Memory"}
        app_mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert app_mounts["vault-secrets"] == "/vault/secrets"
        token_volume = next(n for n, p in app_mounts.items() if "serviceaccount" in p)
        sidecar = spec["containers"][1]
        init = spec["initContainers"][0]
        assert {m["name"] for m in sidecar["volumeMounts"]} == {
            token_volume,
            "home-sidecar",
            "vault-secrets",
        }
        assert sidecar["image"] == "hashicorp/vault:2.0.4"
        assert sidecar["args"] == [
            "echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && "
            "vault agent -config=/home/vault/config.json"
        ]
        config, init_config = vault_config(sidecar), vault_config(init)
        assert config["auto_auth"]["method"] == {
            "type": "kubernetes",
            "mount_path": "auth/kubernetes",
            "config": {
                "role": "myapp",
                "token_path": "/var/run/secrets/kubernetes.io/serviceaccount/token",
            },
        }
        assert config["template"] == [
            {
                "destination": "/vault/secrets/config",
                "contents": ARTICLE_TEMPLATE,
                "left_delimiter": "{{",
                "right_delimiter": "}}",
            }
        ]
        assert config["vault"] == {"address": openbao.url}
        assert (config["exit_after_auth"], init_config["exit_after_auth"]) == (False, True)

        # A pod without the annotation is admitted unchanged.
        plain = kube.create(f"{api}/pods", plain_pod("plain"))
        assert [c["name"] for c in plain["spec"]["containers"]] == ["app"]
        assert "initContainers" not in plain["spec"]
        assert "vault-secrets" not in {v["name"] for v in plain["spec"]["volumes"]}
        assert not plain["metadata"].get("annotations")

        log_during = injector.output()
        pods_json = json.dumps((kube.get(f"{api}/pods") or {}).get("items", []))
    finally:
        injector.kill()

    # The webhook process is gone; the registration is still there (Ignore): pods without
    # the annotation are created; annotated ones too, but without the agent.
    assert kube.get(f"{WEBHOOKS}/{name}") is not None
    after = kube.create(f"{api}/pods", plain_pod("after-stop"))
    assert after["metadata"]["name"] == "after-stop"
    assert [c["name"] for c in after["spec"]["containers"]] == ["app"]
    annotated = kube.create(
        f"{api}/pods",
        plain_pod(
            "annotated-after-stop",
            {"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "myapp"},
        ),
    )
    assert not mutated(annotated)
    assert "vault.hashicorp.com/agent-inject-status" not in annotated["metadata"]["annotations"]

    # Nothing secret in the controller's log or in what the webhook wrote into the pods.
    private_keys = [
        base64.b64decode(stored["data"][k]).decode().split("-----")[2].strip().splitlines()[0]
        for k in ("ca.key", "tls.key")
    ]  # the first line of each key's base64 body
    for text in (log_during, injector.output(), second.output(), pods_json):
        for secret in (api_key, db_password, openbao.root_token, myapp_jwt, client_token):
            assert secret not in text
        for key_line in private_keys:
            assert key_line not in text
    assert "injected" in log_during  # the log does say what happened, by pod name
