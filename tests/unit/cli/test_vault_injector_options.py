"""The ``--vault-injector*`` flags of ``gitsail controller``: validated before anything runs."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from gitsail.cli.vault_injector import injector_options


def options(**over: Any) -> Any:
    args: dict[str, Any] = {
        "listen": "127.0.0.1:8443",
        "service": None,
        "namespace_selector": None,
        "name": "gitsail-vault-agent-injector",
        "tls_secret": None,
        "vault_address": "http://127.0.0.1:8200",
        "agent_image": "hashicorp/vault:2.0.4",
        "control_namespace": "argocd",
    }
    args.update(over)
    return injector_options(**args)


def test_dev_defaults_register_by_url_without_a_shared_secret() -> None:
    opts = options()
    assert (opts.host, opts.port, opts.service, opts.tls_secret) == ("127.0.0.1", 8443, None, None)
    assert opts.exclude_namespaces == ("argocd",)
    assert opts.defaults.vault_address == "http://127.0.0.1:8200"


def test_in_cluster_service_shares_certificates_through_a_secret() -> None:
    opts = options(listen="0.0.0.0:8443", service="gs/gitsail-controller:8443")
    assert opts.service == ("gs", "gitsail-controller", 8443)
    assert opts.tls_secret == ("argocd", "gitsail-vault-agent-injector-tls")


@pytest.mark.parametrize(
    "over",
    [
        {"listen": "8443"},
        {"listen": "0.0.0.0:8443"},  # all addresses without a Service to register
        {"service": "gs/Bad_Name:1"},
        {"service": "gs/x:99999"},
        {"namespace_selector": "a!=b"},
        {"name": "Not/A/Name"},
        {"tls_secret": "../x"},
        {"vault_address": "vault:8200"},
    ],
)
def test_bad_flags_are_refused(over: dict[str, Any]) -> None:
    with pytest.raises(typer.Exit):
        options(**over)
