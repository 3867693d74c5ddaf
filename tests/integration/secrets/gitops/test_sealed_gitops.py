"""The article's Sealed Secrets flow through Git, end to end, on the shared dev cluster:

1. a plain Secret -> ``gitsail seal`` (the CLI, with the controller's certificate) -> committed
   to the test git server -> an Argo CD Application syncs the SealedSecret -> gitsail's
   Sealed Secrets reconciler writes the Secret with the right data; the Application then
   compares as in sync. The same files moved to another namespace (a second Application):
   the strict one fails with a clear condition and no Secret, the cluster-wide one works.
2. key renewal (the key store's own renewal, 31 days later) -> ``gitsail seal rotate
   --commit`` -> exactly one commit; the Application sees the rotation as a change (so
   automated sync applies it), syncs it, the Secret keeps the same data, and both the
   ``--report`` and the key-usage metric say no SealedSecret depends on the old key.

No plaintext in the Applications' status, the Events, the diffs or the logs.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from gitsail.app.engine import AppEngine
from gitsail.controller.events import EventRecorder
from gitsail.controller.sealedsecrets_metrics import KeyUsage
from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.diff.sealed import Opened, open_with_ring
from gitsail.kinds.argo_application import App
from gitsail.kinds.sealedsecret import SealedSecretReconciler
from gitsail.kube import Kube
from gitsail.secrets.keys import KeyRing
from gitsail.secrets.keystore import KeyStore
from gitsail.secrets.sealing import NO_KEY_MESSAGE
from tests.integration.app.conftest import public_url
from tests.integration.secrets.conftest import plain_secret
from tests.integration.secrets.test_sealed_flow import seal

pytestmark = pytest.mark.integration

PLAINTEXTS = ("gitops-password-3k9", "gitops-user-q8")
SS = ("bitnami.com/v1alpha1", "SealedSecret")


async def application(
    kube: Kube, namespace: str, name: str, repo: str, path: str, dest: str
) -> App:
    body: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "path": path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
        },
    }
    return App.from_application(await kube.create(body))


async def fresh_app(engine: AppEngine, name: str, namespace: str) -> App:
    obj = await engine.get_application(name, namespace)
    assert obj is not None
    return App.from_application(obj)


def moved(sealed: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = json.loads(json.dumps(sealed))
    out["metadata"]["namespace"] = namespace
    template_meta = out["spec"].get("template", {}).get("metadata", {})
    if "namespace" in template_meta:
        template_meta["namespace"] = namespace
    return out


def synced(obj: dict[str, Any] | None) -> dict[str, Any]:
    assert obj is not None
    [condition] = (obj.get("status") or {}).get("conditions") or []
    assert condition["type"] == "Synced"
    return dict(condition)


def decoded(secret: dict[str, Any] | None) -> dict[str, str]:
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


class Controller:
    """gitsail's Sealed Secrets kind, as ``controller --sealed-secrets`` wires it: the
    reconciler, the key store, the opener it hands the app engine, the key-usage gauge."""

    def __init__(self, api: Kube, namespace: str, engine: AppEngine) -> None:
        self.api = api
        self.store = KeyStore(api, namespace=namespace, key_size=2048)
        self.ring = KeyRing(())
        self.registry = CollectorRegistry()
        self.usage = KeyUsage(self.registry)
        events = EventRecorder(api, component="sealed-secrets")

        async def record(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
            await events.record(obj, reason=reason, message=message, type=type_)

        self.reconciler = SealedSecretReconciler(
            api, lambda fresh: self.store.ring(fresh=fresh), events=record
        )
        engine.open_sealed = self.open_sealed

    def open_sealed(self, ciphertext: str, label: bytes) -> Opened | None:
        return open_with_ring(self.ring, ciphertext, label)

    async def keys(self) -> KeyRing:
        self.ring = await self.store.ring(fresh=True)
        return self.ring

    async def reconcile(self, name: str, namespace: str) -> dict[str, Any]:
        obj = await self.api.get(*SS, name, namespace)
        assert obj is not None
        await self.reconciler.reconcile(obj)
        self.usage.observe(obj, await self.keys())
        after = await self.api.get(*SS, name, namespace)
        assert after is not None
        return after

    def metric(self, name: str) -> str:
        text = generate_latest(self.registry).decode()
        return next(line for line in text.splitlines() if f'name="{name}"' in line)


async def test_seal_commit_sync_unseal_then_move(
    api: Kube,
    sealed_crd: None,
    engine: AppEngine,
    kube_client: Kube,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    controller = Controller(api, namespace, engine)
    ring = await controller.store.ensure()  # the controller's first key
    assert ring.newest is not None
    await controller.keys()
    cert = tmp_path / "cert.pem"
    cert.write_bytes(ring.newest.cert_pem())

    # 1. Plain Secrets -> gitsail seal -> committed (never the plain ones).
    db = seal(cert, plain_secret("db", namespace, password=PLAINTEXTS[0], user=PLAINTEXTS[1]))
    wide = seal(
        cert, plain_secret("wide", namespace, password=PLAINTEXTS[0]), "--scope", "cluster-wide"
    )
    files = {
        "app/db.yaml": yaml.safe_dump(db),
        "moved/db.yaml": yaml.safe_dump(moved(db, other_namespace)),
        "moved/wide.yaml": yaml.safe_dump(moved(wide, other_namespace)),
    }
    assert not any(p in text for p in PLAINTEXTS for text in files.values())
    git_repo.commit_and_push(files, "sealed secrets")

    # 2. The Application syncs the SealedSecret; the controller writes the Secret.
    repo = public_url(git_repo)
    app = await application(kube_client, namespace, "web", repo, "app", namespace)
    assert (await engine.sync(app)).result.phase == "Succeeded"
    assert synced(await controller.reconcile("db", namespace))["status"] == "True"
    assert decoded(await api.get("v1", "Secret", "db", namespace)) == {
        "password": PLAINTEXTS[0],
        "user": PLAINTEXTS[1],
    }
    comparison = await engine.compare(await fresh_app(engine, "web", namespace))
    assert {d.status for d in comparison.diffs} == {"Synced"}

    # 3. Moved to another namespace: strict fails clearly, cluster-wide works.
    other = await application(kube_client, namespace, "moved", repo, "moved", other_namespace)
    assert (await engine.sync(other)).result.phase == "Succeeded"
    failed = synced(await controller.reconcile("db", other_namespace))
    assert failed["status"] == "False"
    assert NO_KEY_MESSAGE in failed["message"]
    assert await api.get("v1", "Secret", "db", other_namespace) is None
    assert synced(await controller.reconcile("wide", other_namespace))["status"] == "True"
    assert decoded(await api.get("v1", "Secret", "wide", other_namespace)) == {
        "password": PLAINTEXTS[0]
    }

    # 4. No plaintext in status, Events, diffs or logs.
    haystack = [
        (await engine.get_application("web", namespace) or {}).get("status"),
        (await engine.get_application("moved", namespace) or {}).get("status"),
        await api.list("v1", "Event", namespace),
        await api.list("v1", "Event", other_namespace),
        [(await api.get(*SS, n, ns) or {}).get("status") for n, ns in
         (("db", namespace), ("db", other_namespace), ("wide", other_namespace))],
        [[d.unified, d.desired, d.live] for d in comparison.diffs],
    ]  # fmt: skip
    scanned = json.dumps(haystack) + caplog.text
    for plaintext in PLAINTEXTS:
        assert plaintext not in scanned


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, timeout=60
    ).stdout


def _rotate(cluster: Cluster, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gitsail", "seal", "rotate", *args,
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not any(p in proc.stdout + proc.stderr for p in PLAINTEXTS)
    return proc.stdout


async def test_renewal_rotate_one_commit_sync_and_the_old_key_unused(
    api: Kube,
    cluster: Cluster,
    sealed_crd: None,
    engine: AppEngine,
    kube_client: Kube,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    controller = Controller(api, namespace, engine)
    old = (await controller.store.ensure()).newest
    assert old is not None
    await controller.keys()
    cert = tmp_path / "cert.pem"
    cert.write_bytes(old.cert_pem())
    db = seal(cert, plain_secret("db", namespace, password=PLAINTEXTS[0]))
    git_repo.commit_and_push({"app/db.yaml": yaml.safe_dump(db)}, "sealed")
    app = await application(kube_client, namespace, "web", public_url(git_repo), "app", namespace)
    assert (await engine.sync(app)).result.phase == "Succeeded"
    await controller.reconcile("db", namespace)
    before = decoded(await api.get("v1", "Secret", "db", namespace))

    # Key renewal: the key store's own rule, 31 days on (the default period is 30 days).
    later = KeyStore(
        api, namespace=namespace, key_size=2048, clock=lambda: datetime.now(UTC) + timedelta(31)
    )
    renewed = await later.ensure()
    assert renewed.newest is not None
    assert renewed.newest.fingerprint != old.fingerprint
    await controller.keys()
    await controller.reconcile("db", namespace)
    assert 'current="false"' in controller.metric("db")
    assert old.fingerprint in controller.metric("db")

    # gitsail seal rotate: one commit, reporting what still uses the old key.
    work = git_repo.path
    _git(work, "config", "user.email", "t@example.com")
    _git(work, "config", "user.name", "t")
    commits = int(_git(work, "rev-list", "--count", "HEAD"))
    out = _rotate(cluster, str(work), "--controller-namespace", namespace, "--commit", "--report")
    assert "1 file(s) re-encrypted" in out
    assert f"still on an old key: SealedSecret {namespace}/db ({old.fingerprint})" in out
    assert int(_git(work, "rev-list", "--count", "HEAD")) == commits + 1
    _git(work, "push", "--quiet", "origin", "HEAD")

    # The rotation is a change for the Application (automated sync would apply it) ...
    comparison = await engine.compare(await fresh_app(engine, "web", namespace))
    changed = [d for d in comparison.diffs if d.status != "Synced"]
    assert [d.key.kind for d in changed] == ["SealedSecret"]
    assert all(p not in d.unified for d in changed for p in PLAINTEXTS)
    # ... which syncs it; the Secret keeps its data and the old key is no longer used.
    assert (await engine.sync(await fresh_app(engine, "web", namespace))).result.phase == (
        "Succeeded"
    )
    assert synced(await controller.reconcile("db", namespace))["status"] == "True"
    assert decoded(await api.get("v1", "Secret", "db", namespace)) == before
    assert 'current="true"' in controller.metric("db")
    assert renewed.newest.fingerprint in controller.metric("db")
    again = _rotate(cluster, str(work), "--controller-namespace", namespace, "--report")
    assert "0 file(s) re-encrypted" in again
    # The report covers every SealedSecret the cluster has (other tests' too): none of this
    # namespace may be left on an old key.
    assert f"still on an old key: SealedSecret {namespace}/" not in again
    events = await api.list("v1", "Event", namespace)
    status = (await engine.get_application("web", namespace) or {}).get("status")
    scanned = json.dumps([events, status]) + caplog.text
    assert not any(p in scanned for p in PLAINTEXTS)
