"""gitsail's Sealed Secrets against Bitnami's real kubeseal and controller (v0.40.0).

- what ``gitsail seal`` seals (every scope, ``--raw``, with a cert file or the controller's
  cert URL) is unsealed by the real controller into the right Secret;
- what the real ``kubeseal`` seals (every scope, ``--raw``) is unsealed by gitsail with the
  keys it reads from the cluster, where the real controller generated them;
- the key gitsail generated (created as a user brings their own) is used by the real
  controller, and the real controller's key by gitsail: the same Secret format.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.kube import Kube
from gitsail.secrets.keys import KEY_LABEL_SELECTOR, SealingKey
from gitsail.secrets.keystore import KeyStore
from gitsail.secrets.sealedsecret import unseal
from gitsail.secrets.sealing import (
    NO_KEY_MESSAGE,
    DecryptError,
    Scope,
    encryption_label,
    hybrid_decrypt,
)
from tests.integration.helpers import Kube as RawKube
from tests.integration.helpers import eventually

from .conftest import RealController, b64, plain_secret

pytestmark = pytest.mark.integration

GITSAIL = [sys.executable, "-m", "gitsail"]


def gitsail_seal(args: list[str], stdin: bytes = b"") -> str:
    proc = subprocess.run(
        [*GITSAIL, "seal", *args], input=stdin, capture_output=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def run_kubeseal(kubeseal: Path, cluster: Cluster, args: list[str], stdin: bytes = b"") -> str:
    proc = subprocess.run(
        [str(kubeseal), *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
        env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def _apply_sealed(kube: RawKube, namespace: str, sealed: dict[str, Any]) -> None:
    kube.create(f"/apis/bitnami.com/v1alpha1/namespaces/{namespace}/sealedsecrets", sealed)


def _secret_data(kube: RawKube, namespace: str, name: str) -> dict[str, bytes] | None:
    secret = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        return None
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


async def test_gitsail_seal_output_is_unsealed_by_the_real_controller(
    kube: RawKube,
    real_controller: RealController,
    gitsail_key: SealingKey,
    tmp_path: Path,
) -> None:
    ns = real_controller.namespace
    cert_file = tmp_path / "gitsail.pem"
    cert_file.write_bytes(gitsail_key.cert_pem())
    cases = [
        # (scope, certificate): gitsail's own key (a file), the controller's key (its URL)
        (Scope.STRICT, str(cert_file)),
        (Scope.NAMESPACE_WIDE, str(cert_file)),
        (Scope.CLUSTER_WIDE, f"{real_controller.url}/v1/cert.pem"),
        (Scope.STRICT, f"{real_controller.url}/v1/cert.pem"),
    ]
    for index, (scope, cert) in enumerate(cases):
        name = f"gs-{index}-{scope.value}"
        secret = plain_secret(name, ns, password=f"pw-{index}", user="admin")
        out = gitsail_seal(["--cert", cert, "--scope", scope.value], json.dumps(secret).encode())
        _apply_sealed(kube, ns, json.loads(out))
    for index, (scope, _) in enumerate(cases):
        name = f"gs-{index}-{scope.value}"
        data = eventually(
            lambda name=name: _secret_data(kube, ns, name),  # type: ignore[misc]
            timeout=60,
            what=f"the real controller to unseal {name}\n{real_controller.logs()[-3000:]}",
        )
        assert data == {"password": f"pw-{index}".encode(), "user": b"admin"}


async def test_gitsail_raw_values_are_unsealed_by_the_real_controller(
    kube: RawKube, real_controller: RealController, gitsail_key: SealingKey, tmp_path: Path
) -> None:
    ns = real_controller.namespace
    cert_file = tmp_path / "gitsail.pem"
    cert_file.write_bytes(gitsail_key.cert_pem())
    value = tmp_path / "value"
    value.write_bytes(b"raw-value-1")
    for scope in Scope:
        name = f"raw-{scope.value}"
        raw = gitsail_seal(
            [
                "--raw",
                "--cert",
                str(cert_file),
                "--scope",
                scope.value,
                "--namespace",
                ns,
                "--name",
                name,
                "--from-file",
                f"key={value}",
            ]
        )
        assert not raw.endswith("\n")
        sealed = {
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": name, "namespace": ns, "annotations": scope.annotations()},
            "spec": {"encryptedData": {"key": raw}, "template": {"metadata": {}}},
        }
        _apply_sealed(kube, ns, sealed)
    for scope in Scope:
        data = eventually(
            lambda s=scope: _secret_data(kube, ns, f"raw-{s.value}"),  # type: ignore[misc]
            timeout=60,
            what=f"raw-{scope.value}",
        )
        assert data == {"key": b"raw-value-1"}


async def test_kubeseal_output_is_unsealed_by_gitsail_with_the_real_controllers_key(
    api: Kube,
    cluster: Cluster,
    kubeseal: Path,
    real_controller: RealController,
    gitsail_key: SealingKey,
    tmp_path: Path,
) -> None:
    ns = real_controller.namespace
    store = KeyStore(api, namespace=ns)
    ring = await store.ring()
    # Both keys, in the real controller's Secret format; its own is the newest.
    assert len(ring.keys) == 2
    assert ring.newest is not None
    assert ring.newest.cert_pem() == real_controller.cert()
    assert gitsail_key.public_key in [k.public_key for k in ring.keys]
    cert_url = f"{real_controller.url}/v1/cert.pem"
    for scope in Scope:
        secret = plain_secret(f"ks-{scope.value}", ns, token=f"tok-{scope.value}")
        out = run_kubeseal(
            kubeseal,
            cluster,
            ["--cert", cert_url, "--scope", scope.value, "-o", "json"],
            json.dumps(secret).encode(),
        )
        sealed = json.loads(out)
        assert sealed["spec"]["encryptedData"]["token"].startswith("Ag")  # 4096-bit key
        sealed["metadata"]["uid"] = "u"
        produced = unseal(sealed, ring.private_keys())
        assert base64.b64decode(produced["data"]["token"]) == f"tok-{scope.value}".encode()
        # The offline path too: gitsail seal --recovery-unseal with the key Secrets.
        keys_file = tmp_path / "keys.json"
        listed = await api.list("v1", "Secret", ns, label_selector=KEY_LABEL_SELECTOR)
        keys_file.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": listed}))
        recovered = json.loads(
            gitsail_seal(
                ["--recovery-unseal", "--recovery-private-key", str(keys_file)], out.encode()
            )
        )
        assert recovered["data"]["token"] == b64(f"tok-{scope.value}")
    # --raw, in each scope, and the wrong label is refused as the controller refuses it.
    value = tmp_path / "raw"
    value.write_bytes(b"raw-from-kubeseal")
    for scope in Scope:
        raw = run_kubeseal(
            kubeseal,
            cluster,
            [
                "--raw",
                "--cert",
                cert_url,
                "--scope",
                scope.value,
                "--namespace",
                ns,
                "--name",
                "r",
                "--from-file",
                str(value),
            ],
        )
        label = encryption_label(scope, ns, "r")
        assert hybrid_decrypt(ring.private_keys(), raw, label) == b"raw-from-kubeseal"
        if scope is not Scope.CLUSTER_WIDE:
            with pytest.raises(DecryptError, match=NO_KEY_MESSAGE):
                hybrid_decrypt(ring.private_keys(), raw, encryption_label(scope, "other", "r"))


async def test_kubeseal_seals_for_gitsails_key_and_the_real_controller_unseals_it(
    kube: RawKube,
    cluster: Cluster,
    kubeseal: Path,
    real_controller: RealController,
    gitsail_key: SealingKey,
    tmp_path: Path,
) -> None:
    """kubeseal with gitsail's certificate, unsealed by the real controller with gitsail's
    key (a key of the older generation that it keeps for decryption)."""
    ns = real_controller.namespace
    cert_file = tmp_path / "gitsail.pem"
    cert_file.write_bytes(gitsail_key.cert_pem())
    secret = plain_secret("byok", ns, k="brought-your-own")
    out = run_kubeseal(kubeseal, cluster, ["--cert", str(cert_file)], json.dumps(secret).encode())
    _apply_sealed(kube, ns, json.loads(out))
    data = eventually(lambda: _secret_data(kube, ns, "byok"), timeout=60, what="byok")
    assert data == {"k": b"brought-your-own"}
