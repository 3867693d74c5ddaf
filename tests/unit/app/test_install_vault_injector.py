"""``gitsail install --vault-injector``: the controller serves the webhook behind its Service."""

from __future__ import annotations

from typing import Any

from gitsail.app.install import controller_manifests
from gitsail.app.install_vault_injector import with_vault_injector


def test_injector_args_port_and_service_port() -> None:
    manifests = with_vault_injector(controller_manifests("gs"), "gs")
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--vault-injector-service") + 1] == "gs/gitsail-controller:8443"
    assert args[args.index("--vault-injector-listen") + 1] == "0.0.0.0:8443"
    assert {"name": "webhook", "containerPort": 8443} in container["ports"]
    service = next(m for m in manifests if m["kind"] == "Service")
    assert {"name": "webhook", "port": 8443, "targetPort": "webhook"} in service["spec"]["ports"]


def test_without_the_flag_nothing_changes() -> None:
    manifests = controller_manifests("gs")
    args = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--vault-injector" not in args


def test_the_server_deployment_and_service_are_left_alone() -> None:
    def server(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {m["kind"]: m for m in manifests if m["metadata"]["name"] == "gitsail-server"}

    plain = server(controller_manifests("gs"))
    injected = server(with_vault_injector(controller_manifests("gs"), "gs"))
    assert {"Deployment", "Service"} <= set(injected)
    assert injected == plain
