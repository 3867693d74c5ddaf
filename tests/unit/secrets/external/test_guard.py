"""Stores are reached under the operator's URL policy: a tenant's store aimed at the cloud
metadata address is refused before any connection, with a condition-ready message."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from gitsail.controller.externalsecrets import guarded_http
from gitsail.policy import Policy
from gitsail.secrets.external.provider import ProviderError
from gitsail.secrets.external.vault import SecretRef, VaultAuth, VaultConfig, VaultProvider


class Creds:
    async def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        return b"token"

    async def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], seconds: int = 600
    ) -> str:
        return ""

    async def service_account_annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        return {}


async def test_a_store_on_the_metadata_address_is_refused() -> None:
    http = guarded_http(Policy())
    config = VaultConfig(
        server="http://169.254.169.254", path="secret",
        auth=VaultAuth("token", token=SecretRef("ns", "t", "token")),
    )  # fmt: skip
    vault = VaultProvider(config, Creds(), http=http)
    try:
        with pytest.raises(ProviderError, match="denied network") as exc:
            await vault.read("app/db", "")
        assert exc.value.reason == "DeniedHost"
    finally:
        await http.aclose()
