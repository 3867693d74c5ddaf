"""The web UI in a real browser: Debian's chromium driven by Playwright (no downloaded
browser: ``executable_path``). Sign in, filter, open an app, see its tree, sync it with
prune, see it go OutOfSync and Synced live, the masked diff, rollback; a read-only user
has no Sync button."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import configmap, public_url
from tests.integration.ui.conftest import PASSWORDS, RunningServer
from tests.integration.ui.test_api import SECRET, SECRET_VALUE, two_apps

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HAVE_CHROMIUM = Path(CHROMIUM).exists()
# Set to a directory to save screenshots of the main pages (docs/ui.md's come from here).
SCREENSHOTS = os.environ.get("GITSAIL_UI_SCREENSHOTS", "")
LIVE = 120_000  # ms: a sync through the controller, seen without reloading


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian package chromium)")
    profile = tmp_path / "chromium-profile"  # a fresh --user-data-dir per test
    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            yield context
        finally:
            await context.close()
    shutil.rmtree(profile, ignore_errors=True)


async def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=False)


async def sign_in(page: Page, url: str, user: str, password: str) -> None:
    await page.goto(f"{url}/login")
    await page.get_by_label("Username").fill(user)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Applications")).to_be_visible()


async def test_sign_in_filter_open_sync_diff_rollback(
    server: RunningServer, api: Kube, git_repo: Workdir, browser: BrowserContext
) -> None:
    await two_apps(api, server, git_repo)
    page = await browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm of the rollback
    await sign_in(page, server.url, "deployer", PASSWORDS["deployer"])
    table = page.get_by_role("table", name="Applications")
    await expect(table.get_by_role("link", name="a-web")).to_be_visible()
    await expect(table.get_by_role("link", name="b-web")).to_be_visible()
    await shot(page, "ui-applications")
    await page.goto(f"{server.url}/applications?view=tiles")
    await expect(page.locator("ul.tiles li")).to_have_count(2)
    await shot(page, "ui-tiles")
    await page.goto(f"{server.url}/applications")

    await page.get_by_role("searchbox", name="Search").fill("b-web")
    await expect(table.get_by_role("link", name="a-web")).to_have_count(0)
    assert "search=b-web" in page.url  # the filter is in the URL

    await table.get_by_role("link", name="b-web").click()
    await expect(page.get_by_role("heading", name="b-web", exact=True)).to_be_visible()
    graph = page.get_by_role("group", name="Resource graph")  # the default view
    await expect(graph).to_contain_text("ui-cm", timeout=LIVE)  # compared by the controller
    status = page.get_by_test_id("sync-status")
    await expect(status).to_have_text("OutOfSync", timeout=LIVE)

    await page.get_by_role("button", name="Show live diff").click()
    await expect(page.locator("#diff")).to_contain_text("app-secret", timeout=LIVE)
    await page.locator("#diff").scroll_into_view_if_needed()
    await shot(page, "ui-diff")
    assert SECRET_VALUE not in await page.content()

    await page.get_by_role("button", name="Sync", exact=True).click()
    dialog = page.get_by_role("dialog", name="Synchronize")
    await dialog.get_by_label("Prune").check()
    await shot(page, "ui-sync-dialog")
    await dialog.get_by_role("button", name="Synchronize").click()
    await expect(status).to_have_text("Synced", timeout=LIVE)  # live: no reload
    await expect(page.get_by_test_id("operation")).to_contain_text("Succeeded", timeout=LIVE)
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, "ui-application")
    await expect(graph.get_by_role("group", name="ConfigMap ui-cm: Synced")).to_be_visible()
    # The list, the graph's alternative, is kept in the URL (and by live updates).
    await page.get_by_role("link", name="List", exact=True).click()
    tree = page.get_by_role("tree", name="Resource tree")
    await expect(tree).to_contain_text("ui-cm")
    assert "tree=list" in page.url
    await page.get_by_role("link", name="Graph", exact=True).click()
    await expect(graph).to_contain_text("ui-cm")

    # Another path in Git, and the app moved to it: a rollback restores the entry's own
    # source (path app, revision 1), as Argo CD does, not just its revision.

    # Git changes; a refresh makes the controller compare: OutOfSync, then sync again.
    git_repo.commit_and_push(
        {"app2/cm.yaml": configmap("ui-cm", v="2"), "app2/secret.yaml": SECRET}, "v2"
    )
    await api.merge_patch(
        "argoproj.io/v1alpha1",
        "Application",
        "b-web",
        {"spec": {"source": {"path": "app2"}}},
        server.namespace,
    )
    await page.get_by_role("button", name="Refresh").click()
    await expect(status).to_have_text("OutOfSync", timeout=LIVE)
    await page.get_by_role("button", name="Sync", exact=True).click()
    await dialog.get_by_role("button", name="Synchronize").click()
    await expect(status).to_have_text("Synced", timeout=LIVE)
    history = page.get_by_role("table", name="History")
    await expect(history.get_by_role("row")).to_have_count(3, timeout=LIVE)  # head + 2

    # The older deployment (history ids count from 0, as Argo CD's) has the only button.
    rollback = history.get_by_role("button", name=re.compile(r"^Rollback to \d+$"))
    await expect(rollback).to_have_count(1)
    await rollback.click()

    async def rolled_back() -> bool:
        cm = await api.get("v1", "ConfigMap", "ui-cm", server.namespace)
        return (cm or {}).get("data", {}).get("v") == "1"

    from tests.integration.controller.conftest import eventually

    await eventually(rolled_back, timeout=120, what="the rollback to revision 1 applied")
    await expect(history.get_by_role("row")).to_have_count(4, timeout=LIVE)
    app = await api.get("argoproj.io/v1alpha1", "Application", "b-web", server.namespace)
    assert ((app or {})["status"]["history"][-1].get("source") or {}).get("path") == "app"


async def test_readonly_user_sees_no_sync_button(
    server: RunningServer, api: Kube, git_repo: Workdir, browser: BrowserContext
) -> None:
    await two_apps(api, server, git_repo)
    page = await browser.new_page()
    await sign_in(page, server.url, "reader", PASSWORDS["reader"])
    await page.get_by_role("link", name="a-web").click()
    await expect(page.get_by_role("heading", name="a-web", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Refresh")).to_be_visible()
    await expect(page.get_by_role("button", name="Sync", exact=True)).to_have_count(0)


async def test_project_limited_user_sees_only_her_apps(
    server: RunningServer, api: Kube, git_repo: Workdir, browser: BrowserContext
) -> None:
    await two_apps(api, server, git_repo)
    page = await browser.new_page()
    await sign_in(page, server.url, "alice", PASSWORDS["alice"])
    table = page.get_by_role("table", name="Applications")
    await expect(table.get_by_role("link", name="a-web")).to_be_visible()
    await expect(table.get_by_role("link", name="b-web")).to_have_count(0)
    response = await page.goto(f"{server.url}/applications/{server.namespace}/b-web")
    assert response is not None
    assert response.status == 404


async def test_flux_page_draws_the_dependency_graph(
    server: RunningServer, api: Kube, git_repo: Workdir, browser: BrowserContext
) -> None:
    """Real Kustomizations reconciled by the in-process controller: three become Ready,
    the fourth names a path that does not exist; the graph goes dependency → dependant."""
    ns = server.namespace
    git_repo.commit_and_push(
        {
            "infra/cm.yaml": configmap("infra-cm", v="1"),
            "apps/cm.yaml": configmap("apps-cm", v="1"),
            "monitoring/cm.yaml": configmap("monitoring-cm", v="1"),
        },
        "flux",
    )
    await api.create(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "gitops", "namespace": ns},
            "spec": {
                "interval": "1m",
                "url": public_url(git_repo),
                "ref": {"branch": "main"},
                "secretRef": {"name": "creds"},
            },
        }
    )
    for name, path, deps in (
        ("infra", "./infra", []),
        ("apps", "./apps", ["infra"]),
        ("monitoring", "./monitoring", ["infra"]),
        ("tenants", "./tenants", ["apps", "monitoring"]),  # no such path: not Ready
    ):
        await api.create(
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "interval": "10m",
                    "path": path,
                    "prune": True,
                    "targetNamespace": ns,
                    "sourceRef": {"kind": "GitRepository", "name": "gitops"},
                    "dependsOn": [{"name": d} for d in deps],
                },
            }
        )
    page = await browser.new_page()
    await sign_in(page, server.url, "admin", server.admin_password)
    await page.goto(f"{server.url}/flux")
    graph = page.get_by_role("group", name="Dependency graph")
    for name in ("infra", "apps", "monitoring"):  # live: the page updates itself
        node = graph.get_by_role("group", name=f"Kustomization {ns}/{name}: Healthy")
        await expect(node).to_be_visible(timeout=LIVE)
    failed = graph.get_by_role("group", name=f"Kustomization {ns}/tenants: Degraded")
    await expect(failed).to_be_visible(timeout=LIVE)
    await expect(graph.locator("g.edges path")).to_have_count(4)
    await shot(page, "ui-flux")
