"""Tenant input that once stalled or fooled the controller is refused, and nothing stalls.

- a YAML alias bomb in a repository (issue 7, item 4);
- a jq path expression that builds a 2 GB string (item 5);
- a kustomization with an unknown tag that reaches outside the repository (item 6).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gitsail.app.engine import AppEngine, ComparisonError
from gitsail.dev.gitserver import Workdir
from gitsail.diff import jqpath
from gitsail.kube import Kube
from gitsail.policy import DEFAULT_POLICY
from tests.integration.app.conftest import ApplicationFactory, configmap, public_url, reload
from tests.integration.controller.conftest import (
    RunningController,
    app_status,
    eventually,
    start_controller,
    stop_controller,
)

pytestmark = pytest.mark.integration


def _alias_bomb() -> str:
    """555 bytes or so; 9**9 (387 million) nodes once something walks it as a tree."""
    lines = ["  l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n" + "\n".join(lines)


class _LoopLag:
    """The longest gap between ticks of a 50 ms ticker: how long the event loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            self.worst = max(self.worst, now - last - 0.05)
            last = now

    def __enter__(self) -> _LoopLag:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


@pytest.fixture
async def controller(
    kube_client: Kube, namespace: str, tmp_path: Path, repo_secret: object
) -> AsyncIterator[RunningController]:
    running = await start_controller(kube_client, namespace, tmp_path)
    yield running
    await stop_controller(running)


async def test_alias_bomb_is_a_comparison_error_and_healthz_keeps_answering(
    controller: RunningController,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    namespace: str,
) -> None:
    git_repo.commit_and_push({"app/bomb.yaml": _alias_bomb()}, "an alias bomb")
    await make_app("bomb", {"repoURL": public_url(git_repo), "path": "app"})
    slowest = 0.0
    async with httpx.AsyncClient(timeout=5) as client:

        async def refused() -> str | None:
            nonlocal slowest
            started = time.monotonic()
            response = await client.get(f"{controller.url}/healthz")
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200
            status = await app_status(kube_client, namespace, "bomb")
            for condition in status.get("conditions") or []:
                if condition["type"] == "ComparisonError":
                    return str(condition["message"])
            return None

        message = await eventually(refused, timeout=60, what="a ComparisonError for the bomb")
    assert "bomb.yaml" in message
    assert "GITSAIL_YAML_ALIAS_NODES" in message
    assert slowest < 1.0, f"/healthz took {slowest:.2f}s while the bomb was read"
    assert await kube_client.get("v1", "ConfigMap", "bomb", namespace) is None


async def test_runaway_jq_expression_is_refused_in_status_without_blocking_the_loop(
    engine: AppEngine,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
) -> None:
    expr = '"x" * 2000000000'
    git_repo.commit_and_push({"app/cm.yaml": configmap("plain", a="1")}, "a configmap")
    app = await make_app(
        "jq-bomb",
        {"repoURL": public_url(git_repo), "path": "app"},
        ignoreDifferences=[{"kind": "ConfigMap", "jqPathExpressions": [expr]}],
    )
    with _LoopLag() as lag:
        started = time.monotonic()
        await engine.refresh(app)
        elapsed = time.monotonic() - started
    assert lag.worst < 0.5, f"the event loop was blocked for {lag.worst:.2f}s"
    assert elapsed < 10
    status = (await reload(engine, app)).raw["status"]
    (condition,) = [c for c in status["conditions"] if c["type"] == "ComparisonError"]
    assert expr in condition["message"]
    assert "GITSAIL_JQ_MEMORY_BYTES" in condition["message"]

    # A restart forgets the in-memory quarantine; the refusal is recomputed, not lost.
    jqpath.configure(DEFAULT_POLICY)
    await engine.refresh(await reload(engine, app))
    status = (await reload(engine, app)).raw["status"]
    (condition,) = [c for c in status["conditions"] if c["type"] == "ComparisonError"]
    assert expr in condition["message"]
    with pytest.raises(ComparisonError, match="disabled until gitsail restarts"):
        await engine.compare(await reload(engine, app))


async def test_unknown_tag_does_not_let_a_kustomization_reach_outside(
    engine: AppEngine,
    kube_client: Kube,
    make_app: ApplicationFactory,
    git_repo: Workdir,
    repo_secret: object,
    namespace: str,
) -> None:
    # From the checkout, enough ``..`` reach the controller's other checkouts (and /).
    escape = "../" * 12 + "tmp"
    git_repo.commit_and_push(
        {
            "app/kustomization.yaml": f"namePrefix: !foo x\nresources:\n  - {escape}\n",
            "app/cm.yaml": configmap("inside", a="1"),
        },
        "a kustomization that escapes",
    )
    app = await make_app("escape", {"repoURL": public_url(git_repo), "path": "app"})
    with pytest.raises(ComparisonError, match="points outside the repository"):
        await engine.compare(app)
    outcome = await engine.sync(app, prune=True)
    assert outcome.result.phase == "Error"
    assert await kube_client.get("v1", "ConfigMap", "xinside", namespace) is None


async def test_non_utf8_kustomization_is_a_clear_comparison_error(
    engine: AppEngine, make_app: ApplicationFactory, git_repo: Workdir, repo_secret: object
) -> None:
    (git_repo.path / "app").mkdir(parents=True, exist_ok=True)
    (git_repo.path / "app" / "kustomization.yaml").write_bytes(b"namePrefix: caf\xe9-\n")
    git_repo.commit("latin-1 kustomization")
    git_repo.push()
    app = await make_app("latin1", {"repoURL": public_url(git_repo), "path": "app"})
    with pytest.raises(ComparisonError, match=r"app/kustomization.yaml: not UTF-8 text"):
        await engine.compare(app)


async def test_alias_bomb_expanded_by_kustomize_hits_the_render_memory_limit(
    engine: AppEngine, make_app: ApplicationFactory, git_repo: Workdir, repo_secret: object
) -> None:
    git_repo.commit_and_push(
        {"app/kustomization.yaml": "resources: [bomb.yaml]\n", "app/bomb.yaml": _alias_bomb()},
        "kustomize expands the bomb itself",
    )
    app = await make_app("kbomb", {"repoURL": public_url(git_repo), "path": "app"})
    with _LoopLag() as lag:
        started = time.monotonic()
        with pytest.raises(ComparisonError, match="kustomize build") as err:
            await engine.compare(app)
        elapsed = time.monotonic() - started
    assert "GITSAIL_RENDER_MEMORY_BYTES" in str(err.value) or "GITSAIL_YAML" in str(err.value)
    assert elapsed < 60
    assert lag.worst < 0.5
