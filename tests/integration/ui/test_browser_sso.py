"""The web UI's newer parts in Debian's chromium (Playwright, as test_browser.py): SSO
sign-in through a real issuer on another site (localhost vs 127.0.0.1), terminating a
running sync, and a Pod's logs panel in its "no logs" state (kwok Pods have none)."""

from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, expect

from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.app.conftest import public_url
from tests.integration.controller.conftest import create_app, eventually
from tests.integration.ui.conftest import PASSWORDS, RunningServer
from tests.integration.ui.test_api import project, two_apps
from tests.integration.ui.test_browser import LIVE, browser, shot, sign_in
from tests.integration.ui.test_sso import configure_sso, serve_issuer
from tests.integration.ui.test_terminate import LATER, STUCK

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # the fixture, shared


async def test_sso_sign_in_in_the_browser(
    server: RunningServer, api: Kube, git_repo: Workdir, browser: BrowserContext
) -> None:
    await two_apps(api, server, git_repo)
    async with serve_issuer() as issuer:
        await configure_sso(api, server, issuer)
        page = await browser.new_page()
        await page.goto(f"{server.url}/applications")  # not signed in: to the login page
        await page.get_by_role("link", name="Log in via TestIdP").click()
        # Back from the issuer (another site), signed in despite the SameSite=Strict cookie.
        await expect(page.get_by_role("heading", name="Applications")).to_be_visible()
        table = page.get_by_role("table", name="Applications")
        await expect(table.get_by_role("link", name="a-web")).to_be_visible()
        await expect(table.get_by_role("link", name="b-web")).to_have_count(0)  # group's only
        assert issuer.token_requests == 1


async def test_terminate_and_pod_logs_in_the_browser(
    server: RunningServer, api: Kube, git_repo: Workdir, browser: BrowserContext
) -> None:
    ns = server.namespace
    git_repo.commit_and_push({"app/stuck.yaml": STUCK, "app/later.yaml": LATER}, "waves")
    await project(api, ns, "default")
    await create_app(api, ns, "slow", public_url(git_repo))

    async def cached() -> bool:
        return server.service.state.get("applications", ns, "slow") is not None

    await eventually(cached, timeout=20, what="the app in the server's cache")
    page = await browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm of Terminate
    await sign_in(page, server.url, "deployer", PASSWORDS["deployer"])
    await page.goto(f"{server.url}/applications/{ns}/slow")
    await page.get_by_role("button", name="Sync", exact=True).click()
    await (
        page.get_by_role("dialog", name="Synchronize")
        .get_by_role("button", name="Synchronize")
        .click()
    )
    operation = page.get_by_test_id("operation")
    await expect(operation).to_contain_text("waiting for healthy", timeout=LIVE)
    await operation.get_by_role("button", name="Terminate").click()
    await expect(operation).to_contain_text("Operation terminated", timeout=LIVE)
    await expect(operation).to_contain_text("Failed")
    await shot(page, "ui-terminated")

    # The stuck Deployment's Pod (Pending: no node matches): its logs panel says why
    # there are none, with the API server's answer.
    graph = page.get_by_role("group", name="Resource graph")
    logs_button = graph.get_by_role("button", name="Logs of pod stuck-")
    await expect(logs_button.first).to_be_visible(timeout=LIVE)
    await logs_button.first.click()
    await expect(page.get_by_test_id("no-logs")).to_contain_text("No logs:", timeout=LIVE)
