"""The article's flow with gitsail alone: a plain Secret -> ``gitsail seal`` -> the
SealedSecret applied -> gitsail's reconciler creates the Secret. Moved to another namespace,
a strict SealedSecret fails with a clear condition and a cluster-wide one works. An existing
Secret is taken over only when annotated ``managed``. No plaintext in status, events or logs.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gitsail.controller.events import EventRecorder
from gitsail.controller.sealedsecrets import SealedSecrets, SealedSecretsOptions
from gitsail.kinds.sealedsecret import SealedSecretReconciler
from gitsail.kube import Kube
from gitsail.secrets.keystore import KeyStore
from gitsail.secrets.sealing import NO_KEY_MESSAGE
from tests.integration.helpers import Kube as RawKube

from .conftest import plain_secret

pytestmark = pytest.mark.integration

PLAINTEXTS = ("flow-password-9f3k", "flow-user-x7", "takeover-value-q2")


def seal(cert: Path, secret: dict[str, Any], *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", "seal", "--cert", str(cert), "-o", "yaml", *extra],
        input=json.dumps(secret).encode(),
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    import yaml

    doc: dict[str, Any] = yaml.safe_load(proc.stdout)
    return doc


@pytest.fixture
def other_namespace(kube: RawKube, namespace: str) -> Any:
    ns = kube.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": "sealed-moved-"}},
    )["metadata"]["name"]
    yield ns
    kube.client.delete(f"/api/v1/namespaces/{ns}")


@pytest.fixture
def store(api: Kube, namespace: str) -> KeyStore:
    return KeyStore(api, namespace=namespace, key_size=2048)


async def _apply(api: Kube, sealed: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = json.loads(json.dumps(sealed))
    body["metadata"]["namespace"] = namespace
    return await api.create(body)


async def _fresh(api: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    got = await api.get("bitnami.com/v1alpha1", "SealedSecret", meta["name"], meta["namespace"])
    assert got is not None
    return got


def _synced(obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    assert len(conditions) == 1, obj.get("status")
    cond: dict[str, Any] = conditions[0]
    return cond


async def test_article_flow_seal_apply_unseal_move_and_take_over(
    api: Kube,
    sealed_crd: None,
    namespace: str,
    other_namespace: str,
    store: KeyStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ring = await store.ensure()  # no key yet: one is generated and stored as a key Secret
    assert ring.newest is not None
    cert = tmp_path / "cert.pem"
    cert.write_bytes(ring.newest.cert_pem())
    events = EventRecorder(api, component="sealed-secrets")

    async def record(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        await events.record(obj, reason=reason, message=message, type=type_)

    reconciler = SealedSecretReconciler(api, lambda fresh: store.ring(fresh=fresh), events=record)

    # 1. plain Secret -> gitsail seal -> applied -> reconciled -> the Secret.
    secret = plain_secret("db", namespace, password=PLAINTEXTS[0], user=PLAINTEXTS[1])
    sealed = seal(cert, secret)
    assert not any(p in json.dumps(sealed) for p in PLAINTEXTS)
    applied = await _apply(api, sealed, namespace)
    assert await reconciler.reconcile(applied) is not None
    produced = await api.get("v1", "Secret", "db", namespace)
    assert produced is not None
    assert {k: base64.b64decode(v).decode() for k, v in produced["data"].items()} == {
        "password": PLAINTEXTS[0],
        "user": PLAINTEXTS[1],
    }
    owner = produced["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "SealedSecret",
        applied["metadata"]["uid"],
        True,
    )
    fresh = await _fresh(api, applied)
    assert _synced(fresh)["status"] == "True"
    assert fresh["status"]["observedGeneration"] == fresh["metadata"]["generation"]
    # A second pass with nothing changed writes nothing (same resourceVersions).
    before = (fresh["metadata"]["resourceVersion"], produced["metadata"]["resourceVersion"])
    await reconciler.reconcile(fresh)
    again = await _fresh(api, applied)
    secret_again = await api.get("v1", "Secret", "db", namespace)
    assert secret_again is not None
    assert before == (
        again["metadata"]["resourceVersion"],
        secret_again["metadata"]["resourceVersion"],
    )

    # 2. The same strict SealedSecret moved to another namespace fails, clearly.
    moved = await _apply(api, sealed, other_namespace)
    assert await reconciler.reconcile(moved) is None  # only a new spec or key can help
    failed = _synced(await _fresh(api, moved))
    assert failed["status"] == "False"
    assert NO_KEY_MESSAGE in failed["message"]
    assert await api.get("v1", "Secret", "db", other_namespace) is None

    # 3. Cluster-wide: works anywhere.
    wide = seal(
        cert, plain_secret("wide", namespace, password=PLAINTEXTS[0]), "--scope", "cluster-wide"
    )
    moved_wide = await _apply(api, wide, other_namespace)
    await reconciler.reconcile(moved_wide)
    assert _synced(await _fresh(api, moved_wide))["status"] == "True"
    produced_wide = await api.get("v1", "Secret", "wide", other_namespace)
    assert produced_wide is not None
    assert base64.b64decode(produced_wide["data"]["password"]).decode() == PLAINTEXTS[0]

    # 4. An existing Secret not managed by the SealedSecret is left alone ...
    await api.create(plain_secret("taken", namespace, v="hand-made"))
    takeover = await _apply(
        api, seal(cert, plain_secret("taken", namespace, v=PLAINTEXTS[2])), namespace
    )
    await reconciler.reconcile(takeover)
    refused = _synced(await _fresh(api, takeover))
    assert refused["status"] == "False"
    assert "already exists and is not managed by SealedSecret" in refused["message"]
    untouched = await api.get("v1", "Secret", "taken", namespace)
    assert untouched is not None
    assert base64.b64decode(untouched["data"]["v"]) == b"hand-made"
    # ... until it is annotated managed: then it is taken over.
    await api.merge_patch(
        "v1",
        "Secret",
        "taken",
        {"metadata": {"annotations": {"sealedsecrets.bitnami.com/managed": "true"}}},
        namespace=namespace,
    )
    await reconciler.reconcile(await _fresh(api, takeover))
    taken = await api.get("v1", "Secret", "taken", namespace)
    assert taken is not None
    assert base64.b64decode(taken["data"]["v"]).decode() == PLAINTEXTS[2]
    assert taken["metadata"]["ownerReferences"][0]["uid"] == takeover["metadata"]["uid"]
    assert _synced(await _fresh(api, takeover))["status"] == "True"

    # 5. Events say what happened; nothing anywhere carries a plaintext.
    recorded = [
        *await api.list("v1", "Event", namespace),
        *await api.list("v1", "Event", other_namespace),
    ]
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in recorded}
    assert ("db", "Unsealed") in reasons
    assert ("db", "ErrUnsealFailed") in reasons
    assert ("taken", "ErrUpdateFailed") in reasons
    statuses = [
        (await _fresh(api, o)).get("status") for o in (applied, moved, moved_wide, takeover)
    ]
    scanned = json.dumps([recorded, statuses]) + caplog.text
    for plaintext in PLAINTEXTS:
        assert plaintext not in scanned


async def test_cert_verify_and_rotate_endpoints(
    api: Kube, namespace: str, store: KeyStore, tmp_path: Path
) -> None:
    """The controller's endpoints, called directly (see docs/secrets.md: the dev cluster's
    API server does not proxy to loopback, so kubeseal's service-proxy path is not run)."""
    options = SealedSecretsOptions(key_namespace=namespace, key_size=2048, rate_limit_burst=10)
    sealed_secrets = SealedSecrets(api, options)
    sealed_secrets.store = store
    ring = await store.ensure()
    assert ring.newest is not None
    app = Starlette(routes=sealed_secrets.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://controller") as client:
        cert = await client.get("/v1/cert.pem")
        assert cert.status_code == 200
        assert cert.headers["content-type"] == "application/x-pem-file"
        assert cert.content == ring.newest.cert_pem()
        cert_file = tmp_path / "cert.pem"
        cert_file.write_bytes(cert.content)
        sealed = seal(cert_file, plain_secret("v", namespace, k="verify-me"))
        ok = await client.post("/v1/verify", json=sealed)
        assert ok.status_code == 200
        sealed["metadata"]["name"] = "renamed"
        bad = await client.post("/v1/verify", json=sealed)
        assert bad.status_code == 409
        sealed["metadata"]["name"] = "v"
        rotated = await client.post("/v1/rotate", json=sealed)
        assert rotated.status_code == 200
        body = rotated.json()
        assert body["spec"]["encryptedData"]["k"] != sealed["spec"]["encryptedData"]["k"]
    # Rate limited like upstream: 2 per second, burst 2 by default.
    limited = SealedSecrets(api, SealedSecretsOptions(key_namespace=namespace))
    limited.store = store
    transport = httpx.ASGITransport(app=Starlette(routes=limited.routes()))
    async with httpx.AsyncClient(transport=transport, base_url="http://controller") as client:
        codes = [(await client.post("/v1/verify", json=sealed)).status_code for _ in range(4)]
    assert codes[:2] == [200, 200]
    assert 429 in codes[2:]
