"""ExternalSecrets through AWS APIs served by moto on loopback, the controller pointed at it
with ``AWS_ENDPOINT_URL``: the article's SecretStore + ExternalSecret verbatim (v1beta1,
Secrets Manager, jwt auth through a ServiceAccount: TokenRequest -> STS
AssumeRoleWithWebIdentity -> GetSecretValue); a JSON property and Parameter Store with
static keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gitsail.app.install import install_crds
from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube as AsyncKube
from gitsail.kube import load_kubeconfig
from tests.integration.helpers import Kube, eventually

from .conftest import Moto
from .support import Controller, apply, assert_no_leak, ready, secret_data

pytestmark = pytest.mark.integration

# The article's manifests, verbatim (docs: "Secrets from a manager").
ARTICLE = """\
apiVersion: external-secrets.io/v1beta1
kind: SecretStore
metadata:
  name: aws-secrets-manager
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-west-2
      auth:
        jwt:
          serviceAccountRef:
            name: external-secrets
---
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata:
  name: myapp-secrets
spec:
  refreshInterval: 1h
  secretStoreRef:
    name: aws-secrets-manager
    kind: SecretStore
  target:
    name: myapp-secrets
    creationPolicy: Owner
  data:
    - secretKey: api-key
      remoteRef:
        key: myapp/production/api-key
    - secretKey: db-password
      remoteRef:
        key: myapp/production/db-password
"""

API_KEY = "aws-api-key-5b1e0c"
DB_PASSWORD = "aws-db-pw-77e3aa"
PARAM = "ssm-param-value-03fd"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    async def main() -> None:
        async with AsyncKube(await load_kubeconfig(cluster.kubeconfig)) as api:
            await install_crds(api, families=["external-secrets"])

    asyncio.run(main())


@pytest.fixture
def controller(
    cluster: Cluster, namespace: str, crds: None, moto: Moto, tmp_path: Path
) -> Iterator[Controller]:
    env = {"AWS_ENDPOINT_URL": moto.address}
    ctl = Controller(cluster, namespace, tmp_path / "controller.log", env)
    try:
        yield ctl
    finally:
        ctl.stop()


def _create_secret(moto: Moto, name: str, value: str) -> None:
    try:
        moto.call("secretsmanager.CreateSecret", {"Name": name, "SecretString": value})
    except AssertionError:  # the session's moto already has it: a new version then
        moto.call("secretsmanager.PutSecretValue", {"SecretId": name, "SecretString": value})


def test_the_articles_secret_store_and_external_secret_verbatim(
    kube: Kube, namespace: str, moto: Moto, controller: Controller
) -> None:
    _create_secret(moto, "myapp/production/api-key", API_KEY)
    _create_secret(moto, "myapp/production/db-password", DB_PASSWORD)
    # IRSA's convention: the ServiceAccount names the role to assume.
    apply(kube, {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "external-secrets", "annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/myapp"}},
    }, namespace)  # fmt: skip
    for doc in yaml.safe_load_all(ARTICLE):
        apply(kube, doc, namespace)
    eventually(
        lambda: secret_data(kube, namespace, "myapp-secrets")
        == {"api-key": API_KEY, "db-password": DB_PASSWORD},
        timeout=60, what="the article's Secret with both keys",
    )  # fmt: skip
    condition = ready(kube, namespace, "myapp-secrets")
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "SecretSynced")
    store = kube.get(
        f"/apis/external-secrets.io/v1/namespaces/{namespace}/secretstores/aws-secrets-manager"
    )
    assert store is not None
    assert store["status"]["conditions"][0]["reason"] == "Valid"
    assert_no_leak([API_KEY, DB_PASSWORD], kube=kube, namespace=namespace, controller=controller)


def test_json_property_and_parameter_store_with_static_keys(
    kube: Kube, namespace: str, moto: Moto, controller: Controller
) -> None:
    _create_secret(
        moto, f"{namespace}/db", json.dumps({"username": "app", "password": DB_PASSWORD})
    )
    moto.call("AmazonSSM.PutParameter", {
        "Name": f"/{namespace}/param", "Value": PARAM, "Type": "SecureString", "Overwrite": True,
    })  # fmt: skip
    apply(kube, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-keys"},
                 "stringData": {"id": "AKIDTESTKEY", "secret": "test-secret-key"}},
          namespace)  # fmt: skip
    auth = {"secretRef": {
        "accessKeyIDSecretRef": {"name": "aws-keys", "key": "id"},
        "secretAccessKeySecretRef": {"name": "aws-keys", "key": "secret"},
    }}  # fmt: skip
    for name, service in (("sm", "SecretsManager"), ("ssm", "ParameterStore")):
        apply(kube, {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": name},
            "spec": {"provider": {"aws": {"service": service, "region": "us-west-2",
                                          "auth": auth}}},
        }, namespace)  # fmt: skip
    apply(kube, {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "db"},
        "spec": {"secretStoreRef": {"name": "sm"}, "data": [
            {"secretKey": "password",
             "remoteRef": {"key": f"{namespace}/db", "property": "password"}},
        ]},
    }, namespace)  # fmt: skip
    apply(kube, {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "param"},
        "spec": {"secretStoreRef": {"name": "ssm"}, "data": [
            {"secretKey": "value", "remoteRef": {"key": f"/{namespace}/param"}},
        ]},
    }, namespace)  # fmt: skip
    eventually(lambda: secret_data(kube, namespace, "db") == {"password": DB_PASSWORD},
               timeout=60, what="the JSON property")  # fmt: skip
    eventually(lambda: secret_data(kube, namespace, "param") == {"value": PARAM},
               timeout=60, what="the parameter")  # fmt: skip
    assert_no_leak([DB_PASSWORD, PARAM, "test-secret-key"], kube=kube, namespace=namespace,
                   controller=controller)  # fmt: skip
