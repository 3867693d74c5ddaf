"""Every metric docs/controller.md documents gets a sample once the controller has worked.

One scenario per module (an app synced, a webhook push, a drift healed), scraped from
``/metrics``; then one test per documented metric and label set.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitsail.dev import cluster as devcluster
from gitsail.dev.gitserver import GitServer, Workdir
from gitsail.kube import Kube, load_kubeconfig
from tests.integration.app.conftest import configmap, public_url
from tests.integration.conftest import GIT_USER
from tests.integration.controller.conftest import (
    AUTOMATED,
    WEBHOOK_SECRET,
    create_app,
    eventually,
    stop_controller,
)
from tests.integration.controller.test_hardening_webhook import signed_push, start
from tests.integration.helpers import Kube as SyncKube

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# (sample name, labels it must carry) for each documented metric; histograms by _count.
EXPECTED = [
    ("gitsail_app_info", {"name": "measured", "sync_status": "Synced"}),
    ("gitsail_app_sync_total", {"name": "measured", "phase": "Succeeded"}),
    ("gitsail_app_reconcile_duration_seconds_count", {}),
    ("gitsail_app_sync_duration_seconds_count", {}),
    ("gitsail_git_request_duration_seconds_count", {"request_type": "ls-remote"}),
    ("gitsail_git_request_duration_seconds_count", {"request_type": "fetch"}),
    ("gitsail_git_requests_total", {"request_type": "ls-remote"}),
    ("gitsail_git_requests_total", {"request_type": "fetch"}),
    ("gitsail_render_duration_seconds_count", {"tool": "directory"}),
    ("gitsail_render_cache_total", {"result": "miss"}),
    ("gitsail_render_cache_total", {"result": "hit"}),
    ("gitsail_webhook_requests_total", {"provider": "github", "result": "accepted"}),
    ("gitsail_selfheal_total", {}),
    ("gitsail_workqueue_depth", {}),
    ("gitsail_leader", {}),
    ("gitsail_python_gc_seconds_total", {"generation": "0"}),
    ("gitsail_python_gc_runs_total", {"generation": "0"}),
]


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _value(text: str, name: str, labels: dict[str, str]) -> float | None:
    for sample_name, sample_labels, value in _samples(text):
        if sample_name == name and labels.items() <= sample_labels.items():
            return value
    return None


@pytest.fixture(scope="module")
def scenario_namespace(kube: SyncKube) -> Iterator[str]:
    ns = kube.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": "metrics-"}},
    )["metadata"]["name"]
    yield ns
    kube.client.delete(f"/api/v1/namespaces/{ns}")


@pytest.fixture(scope="module")
async def scraped(
    cluster: devcluster.Cluster,
    scenario_namespace: str,
    git_server: GitServer,
    crds_installed: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    """/metrics after: an automated sync, a webhook push synced, a drift healed."""
    ns = scenario_namespace
    repo = f"metrics-{os.getpid()}-{time.monotonic_ns()}"
    git_server.create_repo(repo)
    work = Workdir(git_server.url(repo, with_credentials=True))
    async with Kube(await load_kubeconfig(cluster.kubeconfig)) as api:
        await api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "creds",
                    "namespace": ns,
                    "labels": {"argocd.argoproj.io/secret-type": "repo-creds"},
                },
                "stringData": {
                    "url": git_server.base_url,
                    "username": GIT_USER[0],
                    "password": GIT_USER[1],
                },
            }
        )
        await api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "argocd-secret", "namespace": ns},
                "stringData": {"webhook.github.secret": WEBHOOK_SECRET},
            }
        )
        running = await start(api, ns, tmp_path_factory.mktemp("metrics"), identity="m1")
        try:
            work.commit_and_push({"app/cm.yaml": configmap("measured", v="1")}, "v1")
            await create_app(api, ns, "measured", public_url(work), syncPolicy=AUTOMATED)

            async def data(value: str) -> bool:
                cm = await api.get("v1", "ConfigMap", "measured", ns)
                return cm is not None and cm["data"]["v"] == value

            await _until(lambda: data("1"))
            sha = work.commit_and_push({"app/cm.yaml": configmap("measured", v="2")}, "v2")
            body, headers = signed_push(public_url(work), sha, modified=("app/cm.yaml",))
            async with httpx.AsyncClient() as client:
                await client.post(f"{running.url}/api/webhook", content=body, headers=headers)
            await _until(lambda: data("2"))
            await api.merge_patch("v1", "ConfigMap", "measured", {"data": {"v": "drift"}}, ns)
            await _until(lambda: data("2"))

            async def scrape() -> str:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{running.url}/metrics")).text

            # Wait (bounded) until every expected sample is there; then the tests below
            # say which one is missing, if any.
            deadline = time.monotonic() + 30
            text = await scrape()
            while time.monotonic() < deadline and any(
                _value(text, name, labels) is None for name, labels in EXPECTED
            ):
                await asyncio.sleep(0.5)
                text = await scrape()
            yield text
        finally:
            await stop_controller(running)
            work.close()


async def _until(probe: Callable[[], Awaitable[bool]]) -> None:
    await eventually(probe, timeout=60, what="metrics scenario step")


@pytest.mark.parametrize(
    ("name", "labels"), EXPECTED, ids=[f"{n}{sorted(ls.values())}" for n, ls in EXPECTED]
)
def test_documented_metric_has_a_sample(scraped: str, name: str, labels: dict[str, str]) -> None:
    value = _value(scraped, name, labels)
    assert value is not None, f"{name} {labels} has no sample after a reconcile"
    if name != "gitsail_workqueue_depth":  # a gauge that is 0 when idle
        assert value > 0, f"{name} {labels} is {value}"


def test_every_documented_metric_is_covered() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "controller.md").read_text()
    section = docs.split("## Observability", 1)[1]
    documented = {
        word.strip("`,.").split("{")[0]
        for word in section.split()
        if word.strip("`").startswith("gitsail_")
    }
    covered = {name.removesuffix("_count") for name, _ in EXPECTED}
    assert documented <= covered, f"documented but not tested: {documented - covered}"
