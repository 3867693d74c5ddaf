"""The providers against the real servers (OpenBao, moto) with the cluster-side inputs
(Secret keys) from an in-memory ``Credentials``: KV v1 and v2, versions, metadata, find,
AppRole, namespaces, Vault's cheap version check; Secrets Manager versions and
DescribeSecret, Parameter Store, ListSecrets by tag."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
import pytest

from gitsail.secrets.external.aws import AWSAuth, AWSConfig, AWSProvider
from gitsail.secrets.external.provider import Find, ProviderError, RemoteNotFound
from gitsail.secrets.external.vault import SecretRef, VaultAuth, VaultConfig, VaultProvider

from .conftest import Moto, OpenBao

pytestmark = pytest.mark.integration


class Creds:
    def __init__(self, secrets: Mapping[tuple[str, str, str], str]) -> None:
        self.secrets = secrets

    async def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        try:
            return self.secrets[(namespace, name, key)].encode()
        except KeyError:
            raise ProviderError(f"Secret {namespace}/{name} not found") from None

    async def service_account_token(
        self, namespace: str, name: str, audiences: tuple[str, ...], seconds: int = 600
    ) -> str:
        raise ProviderError("no cluster here")

    async def service_account_annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        return {}


def _vault(bao: OpenBao, **config: object) -> VaultProvider:
    creds = Creds({("ns", "tok", "token"): bao.token})
    auth = VaultAuth("token", token=SecretRef("ns", "tok", "token"))
    return VaultProvider(VaultConfig(server=bao.address, auth=auth, **config), creds)  # type: ignore[arg-type]


async def test_kv2_versions_metadata_and_the_cheap_version_check(openbao: OpenBao) -> None:
    openbao.kv2_put("app/db", {"password": "one"})
    openbao.kv2_put("app/db", {"password": "two"})
    openbao.request("POST", "secret/metadata/app/db", {"custom_metadata": {"team": "a"}})
    vault = _vault(openbao, path="secret")
    try:
        current = await vault.read("app/db", "")
        assert json.loads(current.value) == {"password": "two"}
        assert current.version == "2"
        assert json.loads((await vault.read("app/db", "1")).value) == {"password": "one"}
        assert await vault.current_version("app/db") == "2"
        meta = json.loads((await vault.read("app/db", "", metadata=True)).value)
        assert meta["team"] == "a"
        assert meta["current_version"] == "2"
        # Without a store path the key's first segment is the mount.
        bare = _vault(openbao)
        assert json.loads((await bare.read("secret/app/db", "")).value) == {"password": "two"}
        await bare.close()
        with pytest.raises(RemoteNotFound):
            await vault.read("app/missing", "")
        openbao.request("DELETE", "secret/data/app/db")
        with pytest.raises(RemoteNotFound):  # a deleted version is "not found"
            await vault.read("app/db", "")
    finally:
        await vault.close()


async def test_kv1_find_and_refused_paths(openbao: OpenBao) -> None:
    openbao.request("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
    openbao.request("POST", "kv1/team/api", {"token": "abc"})
    v1 = _vault(openbao, path="kv1", version="v1")
    v2 = _vault(openbao, path="secret")
    try:
        assert json.loads((await v1.read("team/api", "")).value) == {"token": "abc"}
        assert await v1.current_version("team/api") is None
        openbao.kv2_put("team/db-a", {"p": "1"})
        openbao.kv2_put("team/db-b", {"p": "2"})
        openbao.kv2_put("team/cache", {"p": "3"})
        openbao.request("POST", "secret/metadata/team/db-b", {"custom_metadata": {"env": "prod"}})
        found = await v2.find(Find(path="team", name="db-"))
        assert sorted(found) == ["team/db-a", "team/db-b"]
        tagged = await v2.find(Find(path="team", tags=(("env", "prod"),)))
        assert list(tagged) == ["team/db-b"]
        for bad in ("../sys/raw", "a/../../b", "a?x=1", "a#b", ""):
            with pytest.raises(ProviderError, match="key"):
                await v2.read(bad, "")
    finally:
        await v1.close()
        await v2.close()


async def test_approle_login_and_namespace_header(openbao: OpenBao) -> None:
    openbao.request("POST", "sys/auth/approle", {"type": "approle"})
    openbao.request("PUT", "sys/policies/acl/read", {
        "policy": 'path "secret/data/*" { capabilities = ["read"] }'})  # fmt: skip
    openbao.request("POST", "auth/approle/role/eso", {"token_policies": ["read"]})
    role_id = openbao.request("GET", "auth/approle/role/eso/role-id")["data"]["role_id"]
    secret_id = openbao.request("POST", "auth/approle/role/eso/secret-id")["data"]["secret_id"]
    openbao.kv2_put("app/x", {"k": "v"})
    creds = Creds({("ns", "ar", "secret-id"): secret_id})
    auth = VaultAuth("appRole", path="approle", role_id=role_id,
                     secret_ref=SecretRef("ns", "ar", "secret-id"))  # fmt: skip
    vault = VaultProvider(VaultConfig(server=openbao.address, path="secret", auth=auth), creds)
    bad = VaultProvider(
        VaultConfig(server=openbao.address, path="secret",
                    auth=VaultAuth("appRole", role_id="nope",
                                   secret_ref=SecretRef("ns", "ar", "secret-id"))),
        creds,
    )  # fmt: skip
    try:
        assert json.loads((await vault.read("app/x", "")).value) == {"k": "v"}
        with pytest.raises(ProviderError, match="appRole login at auth/approle refused") as exc:
            await bad.read("app/x", "")
        assert secret_id not in str(exc.value)
    finally:
        await vault.close()
        await bad.close()
    # OpenBao namespaces: a KV mount inside namespace "team" is read with X-Vault-Namespace.
    openbao.request("POST", "sys/namespaces/team", {})
    headers = {"X-Vault-Token": openbao.token, "X-Vault-Namespace": "team"}
    for path, body in (("sys/mounts/kv", {"type": "kv-v2"}), ("kv/data/app", {"data": {"n": "1"}})):
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{openbao.address}/v1/{path}", headers=headers, json=body)
        assert answer.status_code < 300, answer.text
    in_team = _vault(openbao, path="kv", namespace="team")
    outside = _vault(openbao, path="kv")
    try:
        assert json.loads((await in_team.read("app", "")).value) == {"n": "1"}
        with pytest.raises(ProviderError):
            await outside.read("app", "")
    finally:
        await in_team.close()
        await outside.close()


async def test_secrets_manager_and_parameter_store(moto: Moto) -> None:
    name = "prov-test/db"
    try:
        moto.call("secretsmanager.CreateSecret", {
            "Name": name, "SecretString": '{"u": "a"}',
            "Tags": [{"Key": "env", "Value": "t"}]})  # fmt: skip
    except AssertionError:
        moto.call("secretsmanager.PutSecretValue", {"SecretId": name, "SecretString": '{"u": "a"}'})
    moto.call("AmazonSSM.PutParameter", {"Name": "/prov/p", "Value": "pv", "Type": "SecureString",
                                         "Overwrite": True})  # fmt: skip
    creds = Creds({("ns", "k", "id"): "AKID", ("ns", "k", "secret"): "SECRET"})
    auth = AWSAuth("secretRef", access_key=SecretRef("ns", "k", "id"),
                   secret_key=SecretRef("ns", "k", "secret"))  # fmt: skip
    endpoints = {"AWS_ENDPOINT_URL": moto.address}
    sm = AWSProvider(AWSConfig("SecretsManager", "us-west-2", auth), creds, endpoints=endpoints)
    ssm = AWSProvider(AWSConfig("ParameterStore", "us-west-2", auth), creds, endpoints=endpoints)
    try:
        first = await sm.read(name, "")
        assert json.loads(first.value) == {"u": "a"}
        assert await sm.current_version(name) == first.version
        moto.call("secretsmanager.PutSecretValue", {"SecretId": name, "SecretString": '{"u": "b"}'})
        assert await sm.current_version(name) != first.version
        assert json.loads((await sm.read(name, "AWSPREVIOUS")).value) == {"u": "a"}
        assert json.loads((await sm.read(name, f"uuid/{first.version}")).value) == {"u": "a"}
        found = await sm.find(Find(name="^prov-test/", tags=(("env", "t"),)))
        assert list(found) == [name]
        with pytest.raises(RemoteNotFound):
            await sm.read("prov-test/missing", "")
        assert (await ssm.read("/prov/p", "")).value == b"pv"
        with pytest.raises(RemoteNotFound):
            await ssm.read("/prov/missing", "")
    finally:
        await sm.close()
        await ssm.close()
