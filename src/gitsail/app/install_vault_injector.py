"""What ``gitsail install --vault-injector`` adds to the controller's manifests.

The controller's Deployment runs with ``--vault-injector`` listening on all addresses at
``PORT`` and registers the webhook with a Service reference (``clientConfig.service``: the
apiserver calls ``gitsail-controller.<namespace>.svc:PORT/mutate``); the Service and the
container get a ``webhook`` port. The certificates are made and renewed by the running
controller, kept in the Secret ``gitsail-vault-agent-injector-tls`` of the namespace so that
every replica serves a certificate of the same CA, and the CA bundle is written into the
MutatingWebhookConfiguration by the controller itself.
"""

from __future__ import annotations

from gitsail.model import Obj

__all__ = ["PORT", "WEBHOOK_NAME", "with_vault_injector"]

PORT = 8443
WEBHOOK_NAME = "gitsail-vault-agent-injector"  # the controller's --vault-injector-name default
CONTROLLER = "gitsail-controller"  # the Deployment and Service ``controller_manifests`` names


def with_vault_injector(manifests: list[Obj], namespace: str) -> list[Obj]:
    """``manifests`` (from ``controller_manifests``) with the injector turned on, in place."""
    for obj in manifests:
        if obj["metadata"].get("name") != CONTROLLER:  # the server's objects stay as they are
            continue
        if obj["kind"] == "Deployment":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            name = obj["metadata"]["name"]
            container["args"] += [
                "--vault-injector",
                "--vault-injector-listen",
                f"0.0.0.0:{PORT}",
                "--vault-injector-service",
                f"{namespace}/{name}:{PORT}",
            ]
            container["ports"].append({"name": "webhook", "containerPort": PORT})
        elif obj["kind"] == "Service":
            obj["spec"]["ports"].append({"name": "webhook", "port": PORT, "targetPort": "webhook"})
    return manifests
