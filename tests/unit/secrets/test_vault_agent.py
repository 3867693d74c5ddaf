"""Golden tests of the Vault Agent injector's mutation against vault-k8s' documented output.

Goldens:

- ``VAULT_K8S_SIDECAR_CONFIG`` / ``VAULT_K8S_INIT_CONFIG``: the base64 ``VAULT_CONFIG`` values
  vault-k8s' own test of the agent containers expects (``agent-inject/agent/agent_test.go``,
  ``TestAgentJsonPatch``: role ``role``, auth path ``test``, address ``http://foobar:1234``, the
  token mount ``foobar`` at ``serviceaccount/somewhere``) — compared byte for byte;
- ``TUTORIAL_POD``: a pod injected by the real injector, as ``kubectl describe pod`` shows it in a
  published walk-through (``devwebapp-with-annotations``: role ``devweb-app``, one secret
  ``credentials.txt``): containers, mounts, environment, resources and volumes;
- the article's Deployment (``myapp``): its config carries the role and the template.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from gitsail.secrets.vault_agent import (
    InjectError,
    InjectorDefaults,
    agent_config,
    pod_patch,
    should_inject,
)

VAULT_K8S_SIDECAR_CONFIG = (
    "eyJhdXRvX2F1dGgiOnsibWV0aG9kIjp7InR5cGUiOiJrdWJlcm5ldGVzIiwibW91bnRfcGF0aCI6InRlc3QiLCJjb25m"
    "aWciOnsicm9sZSI6InJvbGUiLCJ0b2tlbl9wYXRoIjoic2VydmljZWFjY291bnQvc29tZXdoZXJlL3Rva2VuIn19LCJz"
    "aW5rIjpbeyJ0eXBlIjoiZmlsZSIsImNvbmZpZyI6eyJwYXRoIjoiL2hvbWUvdmF1bHQvLnZhdWx0LXRva2VuIn19XX0s"
    "ImV4aXRfYWZ0ZXJfYXV0aCI6ZmFsc2UsInBpZF9maWxlIjoiL2hvbWUvdmF1bHQvLnBpZCIsInZhdWx0Ijp7ImFkZHJl"
    "c3MiOiJodHRwOi8vZm9vYmFyOjEyMzQifSwidGVtcGxhdGVfY29uZmlnIjp7ImV4aXRfb25fcmV0cnlfZmFpbHVyZSI6"
    "dHJ1ZX19"
)
VAULT_K8S_INIT_CONFIG = (
    "eyJhdXRvX2F1dGgiOnsibWV0aG9kIjp7InR5cGUiOiJrdWJlcm5ldGVzIiwibW91bnRfcGF0aCI6InRlc3QiLCJjb25m"
    "aWciOnsicm9sZSI6InJvbGUiLCJ0b2tlbl9wYXRoIjoic2VydmljZWFjY291bnQvc29tZXdoZXJlL3Rva2VuIn19LCJz"
    "aW5rIjpbeyJ0eXBlIjoiZmlsZSIsImNvbmZpZyI6eyJwYXRoIjoiL2hvbWUvdmF1bHQvLnZhdWx0LXRva2VuIn19XX0s"
    "ImV4aXRfYWZ0ZXJfYXV0aCI6dHJ1ZSwicGlkX2ZpbGUiOiIvaG9tZS92YXVsdC8ucGlkIiwidmF1bHQiOnsiYWRkcmVz"
    "cyI6Imh0dHA6Ly9mb29iYXI6MTIzNCJ9LCJ0ZW1wbGF0ZV9jb25maWciOnsiZXhpdF9vbl9yZXRyeV9mYWlsdXJlIjp0"
    "cnVlfX0="
)
ARG = (
    "echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && "
    "vault agent -config=/home/vault/config.json"
)
SA_MOUNT = {
    "name": "kube-api-access-65gg5",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "readOnly": True,
}
ARTICLE_TEMPLATE = (
    '{{- with secret "secret/data/myapp/config" -}}\n'
    'export API_KEY="{{ .Data.data.api_key }}"\n'
    'export DB_PASSWORD="{{ .Data.data.db_password }}"\n'
    "{{- end }}\n"
)


def apply_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace``/``remove`` on a copy (what the apiserver does with it)."""
    out = copy.deepcopy(obj)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = out
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif isinstance(parent, list):
            if op["op"] == "replace":
                parent[int(last)] = op["value"]
            elif last == "-":
                parent.append(op["value"])
            else:
                parent.insert(int(last), op["value"])
        else:
            parent[last] = op["value"]
    return out


def pod(annotations: dict[str, str] | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serviceAccountName": "app",
        "containers": [{"name": "app", "image": "app:1", "volumeMounts": [SA_MOUNT]}],
        "volumes": [{"name": "kube-api-access-65gg5", "projected": {"sources": []}}],
    }
    body.update(spec)
    meta: dict[str, Any] = {"name": "p", "namespace": "default"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def config_of(container: dict[str, Any]) -> dict[str, Any]:
    env = {e["name"]: e.get("value") for e in container["env"]}
    result: dict[str, Any] = json.loads(base64.b64decode(env["VAULT_CONFIG"]))
    return result


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(i for i in items if i["name"] == name)


def test_agent_containers_match_vault_k8s_test_byte_for_byte() -> None:
    defaults = InjectorDefaults(
        vault_address="http://foobar:1234",
        auth_path="test",
        image="foobar-image",
        run_as_user=1000,
        run_as_group=100,
    )
    token = {"name": "foobar", "mountPath": "serviceaccount/somewhere", "readOnly": True}
    p = pod(
        {"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/role": "role"},
        containers=[{"name": "app", "image": "app:1", "volumeMounts": [token]}],
    )
    mutated = apply_patch(p, pod_patch(p, defaults))
    sidecar = by_name(mutated["spec"]["containers"], "vault-agent")
    init = by_name(mutated["spec"]["initContainers"], "vault-agent-init")
    common = {
        "image": "foobar-image",
        "command": ["/bin/sh", "-ec"],
        "args": [ARG],
        "resources": {
            "limits": {"cpu": "500m", "memory": "128Mi"},
            "requests": {"cpu": "250m", "memory": "64Mi"},
        },
        "securityContext": {
            "capabilities": {"drop": ["ALL"]},
            "runAsGroup": 100,
            "runAsUser": 1000,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
    }
    for container, config, mounts in (
        (
            sidecar,
            VAULT_K8S_SIDECAR_CONFIG,
            [token, {"name": "home-sidecar", "mountPath": "/home/vault"}],
        ),
        (init, VAULT_K8S_INIT_CONFIG, [{"name": "home-init", "mountPath": "/home/vault"}, token]),
    ):
        for key, value in common.items():
            assert container[key] == value, key
        assert container["volumeMounts"] == [
            *mounts,
            {"name": "vault-secrets", "mountPath": "/vault/secrets"},
        ]
        env = container["env"]
        assert [e["name"] for e in env][-3:] == [
            "VAULT_LOG_LEVEL",
            "VAULT_LOG_FORMAT",
            "VAULT_CONFIG",
        ]
        assert env[-3]["value"] == "info"
        assert env[-2]["value"] == "standard"
        assert env[-1]["value"] == config  # the exact bytes vault-k8s writes
    assert "lifecycle" not in init


TUTORIAL_POD = pod(
    {
        "vault.hashicorp.com/agent-inject": "true",
        "vault.hashicorp.com/role": "devweb-app",
        "vault.hashicorp.com/agent-inject-secret-credentials.txt": "secret/data/devwebapp/config",
    },
    serviceAccountName="internal-app",
    containers=[{"name": "app", "image": "burtlo/devwebapp-ruby:k8s", "volumeMounts": [SA_MOUNT]}],
)


def test_tutorial_pod_is_mutated_as_kubectl_describe_shows() -> None:
    defaults = InjectorDefaults(vault_address="http://vault:8200", image="hashicorp/vault:1.18.1")
    mutated = apply_patch(TUTORIAL_POD, pod_patch(TUTORIAL_POD, defaults))
    spec = mutated["spec"]
    assert mutated["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"] == (
        "injected"
    )
    assert [c["name"] for c in spec["initContainers"]] == ["vault-agent-init"]
    assert [c["name"] for c in spec["containers"]] == ["app", "vault-agent"]
    assert spec["volumes"][1:] == [
        {"name": "home-init", "emptyDir": {"medium": "Memory"}},
        {"name": "home-sidecar", "emptyDir": {"medium": "Memory"}},
        {"name": "vault-secrets", "emptyDir": {"medium": "Memory"}},
    ]

    def mounts(c: dict[str, Any]) -> set[tuple[str, str, bool]]:
        return {(m["mountPath"], m["name"], m.get("readOnly", False)) for m in c["volumeMounts"]}

    sa = ("/var/run/secrets/kubernetes.io/serviceaccount", "kube-api-access-65gg5", True)
    secrets = ("/vault/secrets", "vault-secrets", False)
    assert mounts(spec["initContainers"][0]) == {("/home/vault", "home-init", False), sa, secrets}
    assert mounts(spec["containers"][0]) == {sa, secrets}
    assert mounts(spec["containers"][1]) == {("/home/vault", "home-sidecar", False), sa, secrets}
    for agent in (spec["initContainers"][0], spec["containers"][1]):
        assert agent["image"] == "hashicorp/vault:1.18.1"
        assert agent["command"] == ["/bin/sh", "-ec"]
        assert agent["args"] == [ARG]
        assert agent["resources"] == {
            "limits": {"cpu": "500m", "memory": "128Mi"},
            "requests": {"cpu": "250m", "memory": "64Mi"},
        }
        described = [
            (e["name"], e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"])
            for e in agent["env"][:-1]
        ]
        assert described == [
            ("NAMESPACE", "metadata.namespace"),
            ("HOST_IP", "status.hostIP"),
            ("POD_IP", "status.podIP"),
            ("VAULT_LOG_LEVEL", "info"),
            ("VAULT_LOG_FORMAT", "standard"),
        ]
        assert agent["env"][-1]["name"] == "VAULT_CONFIG"
    # With no template annotation the default map template of the path is rendered.
    (template,) = config_of(spec["containers"][1])["template"]
    assert template == {
        "destination": "/vault/secrets/credentials.txt",
        "contents": '{{ with secret "secret/data/devwebapp/config" }}'
        "{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}",
        "left_delimiter": "{{",
        "right_delimiter": "}}",
    }


def article_pod() -> dict[str, Any]:
    return pod(
        {
            "vault.hashicorp.com/agent-inject": "true",
            "vault.hashicorp.com/role": "myapp",
            "vault.hashicorp.com/agent-inject-secret-config": "secret/data/myapp/config",
            "vault.hashicorp.com/agent-inject-template-config": ARTICLE_TEMPLATE,
        },
        serviceAccountName="myapp",
    )


def test_article_deployment_config_carries_role_and_template() -> None:
    p = article_pod()
    sidecar = agent_config(p, InjectorDefaults(vault_address="http://127.0.0.1:8200"))
    init = agent_config(p, InjectorDefaults(vault_address="http://127.0.0.1:8200"), init=True)
    assert sidecar["auto_auth"]["method"] == {
        "type": "kubernetes",
        "mount_path": "auth/kubernetes",
        "config": {
            "role": "myapp",
            "token_path": "/var/run/secrets/kubernetes.io/serviceaccount/token",
        },
    }
    assert sidecar["template"] == [
        {
            "destination": "/vault/secrets/config",
            "contents": ARTICLE_TEMPLATE,
            "left_delimiter": "{{",
            "right_delimiter": "}}",
        }
    ]
    assert sidecar["exit_after_auth"] is False
    assert init["exit_after_auth"] is True
    assert sidecar["vault"] == {"address": "http://127.0.0.1:8200"}


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {"app": "x"},
        {"vault.hashicorp.com/agent-inject": "false"},
        {"vault.hashicorp.com/agent-inject": "0", "vault.hashicorp.com/role": "r"},
        {
            "vault.hashicorp.com/agent-inject": "true",
            "vault.hashicorp.com/role": "r",
            "vault.hashicorp.com/agent-inject-status": "injected",
        },
    ],
)
def test_pods_that_do_not_ask_get_no_patch(annotations: dict[str, str] | None) -> None:
    assert pod_patch(pod(annotations)) == []


def test_running_pod_is_not_mutated() -> None:
    p = article_pod()
    p["status"] = {"phase": "Running"}
    assert not should_inject(p)


def test_status_update_reinjects_without_duplicates() -> None:
    first = apply_patch(article_pod(), pod_patch(article_pod()))
    first["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"] = "update"
    second = apply_patch(first, pod_patch(first))
    assert [c["name"] for c in second["spec"]["containers"]] == ["app", "vault-agent"]
    assert [c["name"] for c in second["spec"]["initContainers"]] == ["vault-agent-init"]
    assert [v["name"] for v in second["spec"]["volumes"]] == [
        "kube-api-access-65gg5",
        "home-init",
        "home-sidecar",
        "vault-secrets",
    ]
    names = [m["name"] for m in second["spec"]["containers"][0]["volumeMounts"]]
    assert names.count("vault-secrets") == 1
    assert second["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-status"] == (
        "injected"
    )


def test_pre_populate_only_has_no_sidecar() -> None:
    p = article_pod()
    p["metadata"]["annotations"]["vault.hashicorp.com/agent-pre-populate-only"] = "true"
    mutated = apply_patch(p, pod_patch(p))
    assert [c["name"] for c in mutated["spec"]["containers"]] == ["app"]
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == ["vault-agent-init"]
    assert "home-sidecar" not in [v["name"] for v in mutated["spec"]["volumes"]]


def test_annotations_reach_the_agent_config_and_containers() -> None:
    p = article_pod()
    p["metadata"]["annotations"].update(
        {
            "vault.hashicorp.com/agent-image": "openbao/openbao:2.7.2",
            "vault.hashicorp.com/namespace": "team-a",
            "vault.hashicorp.com/auth-path": "auth/k8s-dev",
            "vault.hashicorp.com/tls-skip-verify": "true",
            "vault.hashicorp.com/ca-cert": "/vault/tls/ca.crt",
            "vault.hashicorp.com/service": "https://bao.example:8200",
        }
    )
    mutated = apply_patch(p, pod_patch(p))
    sidecar = by_name(mutated["spec"]["containers"], "vault-agent")
    assert sidecar["image"] == "openbao/openbao:2.7.2"
    config = config_of(sidecar)
    assert config["vault"] == {
        "address": "https://bao.example:8200",
        "ca_cert": "/vault/tls/ca.crt",
        "tls_skip_verify": True,
    }
    assert config["auto_auth"]["method"]["mount_path"] == "auth/k8s-dev"
    assert config["auto_auth"]["method"]["namespace"] == "team-a"


def test_existing_init_containers_get_the_mount_and_init_first_reorders() -> None:
    p = article_pod()
    p["spec"]["initContainers"] = [{"name": "migrate", "image": "m:1"}]
    mutated = apply_patch(p, pod_patch(p))
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == ["migrate", "vault-agent-init"]
    assert mutated["spec"]["initContainers"][0]["volumeMounts"] == [
        {"name": "vault-secrets", "mountPath": "/vault/secrets"}
    ]
    p["metadata"]["annotations"]["vault.hashicorp.com/agent-init-first"] = "true"
    mutated = apply_patch(p, pod_patch(p))
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == ["vault-agent-init", "migrate"]


def test_pod_without_annotations_map_gets_one() -> None:
    # A pod whose only annotation is removed by an earlier webhook still gets a valid patch:
    # the status annotation is added to an existing map (here the trigger keeps it non-empty).
    ops = pod_patch(article_pod())
    assert ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations/vault.hashicorp.com~1agent-inject-status",
        "value": "injected",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"vault.hashicorp.com/agent-inject": "yes"}, "not a boolean"),
        ({"vault.hashicorp.com/role": ""}, "role is missing"),
        ({"vault.hashicorp.com/agent-inject-file-config": "../../etc/passwd"}, "outside"),
        ({"vault.hashicorp.com/agent-pre-populate-only": "maybe"}, "not a boolean"),
        ({"vault.hashicorp.com/agent-inject-default-template": "yaml"}, "map or json"),
    ],
)
def test_bad_annotations_refuse_with_a_clear_message(extra: dict[str, str], message: str) -> None:
    p = article_pod()
    p["metadata"]["annotations"].update(extra)
    with pytest.raises(InjectError, match=message):
        pod_patch(p)


def test_pod_without_token_mount_is_refused() -> None:
    p = article_pod()
    p["spec"]["containers"][0]["volumeMounts"] = []
    with pytest.raises(InjectError, match="ServiceAccount token"):
        pod_patch(p)


def test_go_json_escapes_html_like_go() -> None:
    p = article_pod()
    p["metadata"]["annotations"]["vault.hashicorp.com/agent-inject-template-config"] = "a<b>&c"
    ops = pod_patch(p)
    init = next(o["value"] for o in ops if o["path"] == "/spec/initContainers")[0]
    raw = base64.b64decode(init["env"][-1]["value"]).decode()
    assert '"contents":"a\\u003cb\\u003e\\u0026c"' in raw


def test_job_pods_get_the_init_container_only_unless_they_say_otherwise() -> None:
    p = article_pod()
    p["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "migrate-29001", "uid": "u"}
    ]
    mutated = apply_patch(p, pod_patch(p))
    assert [c["name"] for c in mutated["spec"]["containers"]] == ["app"]
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == ["vault-agent-init"]
    p["metadata"]["annotations"]["vault.hashicorp.com/agent-pre-populate-only"] = "false"
    mutated = apply_patch(p, pod_patch(p))
    assert [c["name"] for c in mutated["spec"]["containers"]] == ["app", "vault-agent"]


def test_containers_and_resources_annotations() -> None:
    p = article_pod()
    p["spec"]["containers"].append({"name": "metrics", "image": "m:1", "volumeMounts": []})
    p["metadata"]["annotations"].update(
        {
            "vault.hashicorp.com/agent-inject-containers": "app",
            "vault.hashicorp.com/agent-limits-cpu": "1",
            "vault.hashicorp.com/agent-requests-mem": "32Mi",
            "vault.hashicorp.com/agent-limits-mem": "",
        }
    )
    mutated = apply_patch(p, pod_patch(p))
    app, metrics, sidecar = mutated["spec"]["containers"]
    assert "vault-secrets" in [m["name"] for m in app["volumeMounts"]]
    assert metrics["volumeMounts"] == []
    assert sidecar["resources"] == {
        "limits": {"cpu": "1"},
        "requests": {"cpu": "250m", "memory": "32Mi"},
    }
    p["metadata"]["annotations"]["vault.hashicorp.com/agent-limits-cpu"] = "lots"
    with pytest.raises(InjectError, match="not a quantity"):
        pod_patch(p)
