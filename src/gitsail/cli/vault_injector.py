"""The ``--vault-injector*`` options of ``gitsail controller``, turned into ``InjectorOptions``."""

from __future__ import annotations

import re

from gitsail.cli.output import fail
from gitsail.controller.vault_injector import InjectorOptions, parse_selector
from gitsail.secrets.vault_agent import InjectorDefaults

__all__ = ["injector_options"]

_SERVICE = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-a-z0-9]*[a-z0-9])?):(\d{1,5})")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def injector_options(
    *,
    listen: str,
    service: str | None,
    namespace_selector: str | None,
    name: str,
    tls_secret: str | None,
    vault_address: str,
    agent_image: str,
    control_namespace: str,
) -> InjectorOptions:
    """Validate the flags; a bad one stops the command with a message."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise fail(f"--vault-injector-listen {listen!r}: expected HOST:PORT")
    host = host.strip("[]")
    svc = None
    if service:
        match = _SERVICE.fullmatch(service)
        if not match or not 0 < int(match.group(5)) < 65536:
            raise fail(f"--vault-injector-service {service!r}: expected NAMESPACE/NAME:PORT")
        svc = (match.group(1), match.group(3), int(match.group(5)))
    elif host in ("0.0.0.0", "::"):  # noqa: S104 (refused here, not bound)
        raise fail(
            "--vault-injector-listen on all addresses needs --vault-injector-service "
            "(the apiserver must be told one address to call)"
        )
    selector = None
    if namespace_selector:
        try:
            selector = parse_selector(namespace_selector)
        except ValueError as exc:
            raise fail(f"--vault-injector-namespace-selector: {exc}") from None
    if not _NAME.fullmatch(name) or len(name) > 253:
        raise fail(f"--vault-injector-name {name!r} is not a Kubernetes object name")
    if tls_secret is None and svc is not None:
        tls_secret = f"{name}-tls"
    if tls_secret is not None and (not _NAME.fullmatch(tls_secret) or len(tls_secret) > 253):
        raise fail(f"--vault-injector-tls-secret {tls_secret!r} is not a Kubernetes object name")
    if not vault_address.startswith(("http://", "https://")):
        raise fail(f"--vault-address {vault_address!r}: expected an http(s) URL")
    return InjectorOptions(
        host=host,
        port=int(port),
        name=name,
        service=svc,
        namespace_selector=selector,
        exclude_namespaces=(control_namespace,),
        tls_secret=(control_namespace, tls_secret) if tls_secret else None,
        defaults=InjectorDefaults(vault_address=vault_address, image=agent_image),
    )
