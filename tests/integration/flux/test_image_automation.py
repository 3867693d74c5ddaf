"""Flux image automation through the REAL controller, registry and git server (issue 14's
Done-when): an image pushed to the loopback registry (manifest and blobs through the
distribution API, no Docker) is scanned by an ImageRepository, chosen by an ImagePolicy
``>=1.0.0 <2.0.0``, committed by an ImageUpdateAutomation where a setter comment marks it
(comments kept, a one-line diff), and deployed by a Flux Kustomization of that repository;
``2.0.0`` changes nothing, ``1.3.0`` is chosen next."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import git
from gitsail.dev.registry import Registry
from gitsail.kinds.flux_image_reconciler import ImageRepositoryReconciler, TagStore
from gitsail.kube import Kube
from gitsail.model import Obj
from gitsail.source.oci import OCIClient
from tests.integration.controller.conftest import api, control_ns, crds_installed, eventually
from tests.integration.flux.test_flux_controller import (
    FluxEnv,
    condition,
    flux,
)
from tests.integration.workflow.conftest import push_image

__all__ = ["api", "control_ns", "crds_installed", "flux"]  # fixtures, re-exported

pytestmark = pytest.mark.integration

IMAGE_API = "image.toolkit.fluxcd.io/v1"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as running:
        yield running


def manifests(ns: str, image: str) -> dict[str, str | None]:
    return {
        "deploy/kustomization.yaml": f"namespace: {ns}\nresources: [deployment.yaml]\n",
        "deploy/deployment.yaml": f"""\
# The app, as the article deploys it.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app}}
  template:
    metadata:
      labels: {{app: app}}
    spec:
      containers:
        - name: app
          # bumped by the image automation, never by hand
          image: {image}:1.0.0 # {{"$imagepolicy": "{ns}:app"}}
          ports:
            - containerPort: 8080  # http
""",
    }


async def _create(flux: FluxEnv, kind: str, name: str, spec: dict[str, Any]) -> None:
    await flux.api.create(
        {
            "apiVersion": IMAGE_API,
            "kind": kind,
            "metadata": {"name": name, "namespace": flux.ns},
            "spec": spec,
        }
    )


async def _image_status(flux: FluxEnv, kind: str, name: str) -> dict[str, Any]:
    obj = await flux.api.get(IMAGE_API, kind, name, flux.ns)
    return dict((obj or {}).get("status") or {})


async def _cli(cluster: Cluster, *args: str) -> str:
    """The CLI as a process (the controller runs in this event loop: never block it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gitsail", *args, "--kubeconfig", str(cluster.kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


async def _rescan(flux: FluxEnv, cluster: Cluster) -> None:
    """``gitsail reconcile image repository app``: scan now, wait for it."""
    out = await _cli(cluster, "reconcile", "image", "repository", "app", "-n", flux.ns)
    assert "ImageRepository reconciliation completed" in out


def _remote(flux: FluxEnv, *args: str) -> str:
    git("fetch", "--quiet", "origin", "+refs/heads/main:refs/remotes/origin/main",
        cwd=flux.repo.path)  # fmt: skip
    return git(*args, cwd=flux.repo.path)


async def test_pushed_image_is_chosen_committed_and_deployed(
    flux: FluxEnv, registry: Registry, cluster: Cluster
) -> None:
    ns = flux.ns
    image = f"{registry.host}/app"
    for tag in ("0.9.0", "1.2.0", "sha256-0123.sig"):  # the .sig is excluded by default
        push_image(registry, "app", tag)
    flux.repo.commit_and_push(manifests(ns, image), "the app at 1.0.0")
    base = _remote(flux, "rev-parse", "origin/main").strip()

    await flux.git_repository(interval="5s")
    await flux.kustomization("app", path="./deploy")
    await _create(flux, "ImageRepository", "app", {"image": image, "interval": "1m"})
    await _create(
        flux,
        "ImagePolicy",
        "app",
        {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": ">=1.0.0 <2.0.0"}}},
    )
    await _create(
        flux,
        "ImageUpdateAutomation",
        "app",
        {
            "interval": "1m",
            "sourceRef": {"kind": "GitRepository", "name": "myapp"},
            "git": {
                "checkout": {"ref": {"branch": "main"}},
                "commit": {
                    "author": {"name": "fluxbot", "email": "fluxbot@example.invalid"},
                    "messageTemplate": (
                        "chore: image update by {{ .AutomationObject }}\n\n"
                        "{{ range .Changed.Changes -}}\n"
                        "- {{ .OldValue }} -> {{ .NewValue }}\n"
                        "{{ end -}}"
                    ),
                },
                "push": {"branch": "main"},
            },
            "update": {"path": "./deploy", "strategy": "Setters"},
        },
    )

    # The scan: three tags, the signature excluded.
    scanned = await eventually(
        lambda: _scan_with(flux, "1.2.0"), timeout=60, what="the ImageRepository's scan"
    )
    assert scanned["lastScanResult"]["tagCount"] == 2
    assert scanned["canonicalImageName"] == image
    assert "sha256-0123.sig" not in scanned["lastScanResult"]["latestTags"]

    policy = await eventually(
        lambda: _latest(flux, "1.2.0"), timeout=60, what="the ImagePolicy choosing 1.2.0"
    )
    assert policy["latestRef"] == {"name": image, "tag": "1.2.0"}
    assert policy["latestImage"] == f"{image}:1.2.0"

    # The automation's commit: one line changed, the comments kept, its author and message.
    automation = await eventually(
        lambda: _pushed(flux, ""), timeout=90, what="the automation's first push"
    )
    first = automation["lastPushCommit"]
    assert _remote(flux, "rev-parse", "origin/main").strip() == first
    assert _remote(flux, "rev-parse", f"{first}^").strip() == base
    diff = _remote(flux, "diff", "--unified=0", base, first)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == [
        f'-          image: {image}:1.0.0 # {{"$imagepolicy": "{ns}:app"}}',
        f'+          image: {image}:1.2.0 # {{"$imagepolicy": "{ns}:app"}}',
    ]
    text = _remote(flux, "show", f"{first}:deploy/deployment.yaml")
    assert "# bumped by the image automation, never by hand\n" in text
    assert "containerPort: 8080  # http\n" in text
    assert _remote(flux, "log", "-1", "--format=%an <%ae>", first).strip() == (
        "fluxbot <fluxbot@example.invalid>"
    )
    assert _remote(flux, "log", "-1", "--format=%B", first).strip() == (
        f"chore: image update by {ns}/app\n\n- {image}:1.0.0 -> {image}:1.2.0"
    )
    assert condition(await flux.get(IMAGE_API, "ImageUpdateAutomation", "app"))["status"] == "True"

    # The Kustomization deploys the committed tag.
    await eventually(
        lambda: _deployed(flux, f"{image}:1.2.0"), timeout=90, what="the Deployment at 1.2.0"
    )

    # 2.0.0 is outside the range: scanned, not chosen, nothing committed. 1.3.0 is next.
    push_image(registry, "app", "2.0.0")
    await _rescan(flux, cluster)
    await eventually(lambda: _scan_with(flux, "2.0.0"), timeout=60, what="the scan of 2.0.0")
    assert (await _image_status(flux, "ImagePolicy", "app"))["latestRef"]["tag"] == "1.2.0"
    push_image(registry, "app", "1.3.0")
    await _rescan(flux, cluster)
    policy = await eventually(
        lambda: _latest(flux, "1.3.0"), timeout=60, what="the ImagePolicy choosing 1.3.0"
    )
    assert policy["observedPreviousRef"] == {"name": image, "tag": "1.2.0"}
    automation = await eventually(
        lambda: _pushed(flux, first), timeout=90, what="the automation's second push"
    )
    second = automation["lastPushCommit"]
    # Its parent is the first push: 2.0.0 made no commit in between.
    assert _remote(flux, "rev-parse", f"{second}^").strip() == first
    assert f"image: {image}:1.3.0 # " in _remote(flux, "show", f"{second}:deploy/deployment.yaml")
    await eventually(
        lambda: _deployed(flux, f"{image}:1.3.0"), timeout=90, what="the Deployment at 1.3.0"
    )
    # What `gitsail get images` shows of the three.
    table = await _cli(cluster, "get", "images", "all", "-n", ns)
    assert f"{image}:1.3.0" in table, table
    assert second[:12] in table, table
    listed = json.loads(
        await _cli(cluster, "get", "images", "policy", "app", "-n", ns, "-o", "json")
    )
    assert listed["status"]["latestRef"] == {"name": image, "tag": "1.3.0"}


async def _scan_with(flux: FluxEnv, tag: str) -> dict[str, Any] | None:
    status = await _image_status(flux, "ImageRepository", "app")
    latest = (status.get("lastScanResult") or {}).get("latestTags") or []
    return status if tag in latest else None


async def _latest(flux: FluxEnv, tag: str) -> dict[str, Any] | None:
    status = await _image_status(flux, "ImagePolicy", "app")
    return status if (status.get("latestRef") or {}).get("tag") == tag else None


async def _pushed(flux: FluxEnv, previous: str) -> dict[str, Any] | None:
    status = await _image_status(flux, "ImageUpdateAutomation", "app")
    commit = status.get("lastPushCommit")
    return status if commit and commit != previous else None


async def _deployed(flux: FluxEnv, reference: str) -> Obj | None:
    live = await flux.get("apps/v1", "Deployment", "app")
    containers = (((live or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    images = [c.get("image") for c in containers.get("containers") or []]
    return live if images == [reference] else None


async def test_scan_of_a_registry_with_basic_auth_uses_the_docker_config_secret(
    flux_kube: Kube, namespace: str
) -> None:
    """The ImageRepository reconciler alone against a registry behind htpasswd: the right
    Secret lists the tags, a wrong one is AuthenticationFailed and shows no password."""
    with Registry(credentials=("robot", "pull-s3cret")) as private:
        for tag in ("1.0.0", "1.1.0"):
            push_image(private, "team/app", tag)
        for name, password in (("good", "pull-s3cret"), ("bad", "wrong-s3cret")):
            auth = base64.b64encode(f"robot:{password}".encode()).decode()
            config = {"auths": {private.host: {"auth": auth}}}
            await flux_kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": namespace},
                    "type": "kubernetes.io/dockerconfigjson",
                    "stringData": {".dockerconfigjson": json.dumps(config)},
                }
            )
            await flux_kube.create(
                {
                    "apiVersion": IMAGE_API,
                    "kind": "ImageRepository",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {
                        "image": f"{private.host}/team/app",
                        "interval": "1h",
                        "secretRef": {"name": name},
                    },
                }
            )
        reconciler = ImageRepositoryReconciler(flux_kube, OCIClient(), TagStore())
        for name in ("good", "bad"):
            obj = await flux_kube.get(IMAGE_API, "ImageRepository", name, namespace)
            assert obj is not None
            await reconciler.reconcile(obj)
    good = await flux_kube.get(IMAGE_API, "ImageRepository", "good", namespace)
    bad = await flux_kube.get(IMAGE_API, "ImageRepository", "bad", namespace)
    assert good is not None
    assert bad is not None
    assert good["status"]["lastScanResult"]["latestTags"] == ["1.1.0", "1.0.0"]
    assert condition(good)["status"] == "True"
    assert (condition(bad)["status"], condition(bad)["reason"]) == (
        "False",
        "AuthenticationFailed",
    )
    assert "s3cret" not in json.dumps(bad["status"])
