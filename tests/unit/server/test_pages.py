"""The pages and the API over in-memory caches (the benchmark's ``MemoryCluster``): sign-in
form, CSRF, RBAC in lists and gets, 404/422/401 answers. No cluster: nothing is written."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import cast

import httpx
import pytest
from benchmarks.server_bench import NS, MemoryCluster, application

from gitsail.kube import Kube
from gitsail.policy import Policy
from gitsail.server.app import make_app
from gitsail.server.auth import csrf_token, hash_password, issue_token, verify_token
from gitsail.server.service import Service
from gitsail.server.state import ServerState

KEY = b"k" * 32


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    cluster = MemoryCluster()
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": NS, "resourceVersion": "1"},
            "data": {
                "server.secretkey": b64(KEY.decode()),
                "admin.password": b64(hash_password("admin-pass")),
                "accounts.viewer.password": b64(hash_password("viewer-pass")),
            },
        }
    )
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": NS},
            "data": {"accounts.viewer": "login"},
        }
    )
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", "namespace": NS, "resourceVersion": "1"},
            "data": {"policy.csv": "p, viewer, applications, get, project-1/*, allow"},
        }
    )
    for i in range(20):
        cluster.add(application(i))
    state = ServerState(cluster, NS, (NS,))
    await state.start()
    service = Service(state, cast(Kube, cluster), Policy())
    transport = httpx.ASGITransport(app=make_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as c:
        yield c
    await state.stop()


async def test_login_form_sets_a_cookie_and_lists_only_allowed_apps(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/applications")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    bad = await client.post("/login", data={"username": "viewer", "password": "nope"})
    assert bad.status_code == 401
    assert "Invalid username or password" in bad.text
    ok = await client.post(
        "/login", data={"username": "viewer", "password": "viewer-pass", "next": "//evil.example/"}
    )
    assert ok.status_code == 303
    assert ok.headers["location"] == "/applications"  # never off-site
    listed = await client.get("/applications")
    assert listed.status_code == 200
    assert "app-0001" in listed.text  # project-1
    assert "app-0002" not in listed.text
    assert (await client.get(f"/applications/{NS}/app-0002")).status_code == 404
    assert (await client.get(f"/applications/{NS}/app-0011")).status_code == 200
    api = await client.get("/api/v1/applications")
    assert {a["metadata"]["name"] for a in api.json()["items"]} == {"app-0001", "app-0011"}


async def test_form_posts_need_the_sessions_csrf_token(client: httpx.AsyncClient) -> None:
    token, claims = issue_token(KEY, "admin")
    client.cookies.set("argocd.token", token)
    url = f"/applications/{NS}/app-0001/refresh"
    missing = await client.post(url, data={})
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    other = await client.post(url, data={"_csrf": csrf_token(KEY, "another-session")})
    assert other.status_code == 403
    # A bearer token (scripts) needs no CSRF token: the API's bad input answers.
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    malformed = await client.post("/api/v1/applications/x/sync", content=b"[", headers=headers)
    assert malformed.status_code == 422
    not_object = await client.post("/api/v1/applications/x/sync", json=[1], headers=headers)
    assert not_object.status_code == 422
    missing_app = await client.post("/api/v1/applications/x/sync", json={}, headers=headers)
    assert missing_app.status_code == 404
    assert verify_token(KEY, token).token_id == claims.token_id


async def test_expired_and_foreign_tokens_are_401(client: httpx.AsyncClient) -> None:
    expired, _ = issue_token(KEY, "admin", seconds=10, now=time.time() - 100)
    foreign, _ = issue_token(b"x" * 32, "admin")
    for token in (expired, foreign, "garbage"):
        r = await client.get("/api/v1/applications", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


async def test_bad_filters_are_400_and_pages_are_bounded(client: httpx.AsyncClient) -> None:
    token, _ = issue_token(KEY, "admin")
    headers = {"Authorization": f"Bearer {token}"}
    r = await client.get("/api/v1/applications?limit=5&offset=5", headers=headers)
    body = r.json()
    assert [a["metadata"]["name"] for a in body["items"]] == [f"app-{i:04d}" for i in range(5, 10)]
    assert body["metadata"]["remainingItemCount"] == 10
    assert (
        await client.get("/api/v1/applications?limit=100000", headers=headers)
    ).status_code == 400
    assert (
        await client.get("/api/v1/applications?selector=a=b=c", headers=headers)
    ).status_code == 400
    tree = await client.get("/api/v1/applications/app-0003/resource-tree", headers=headers)
    assert len(tree.json()["nodes"]) == 5


async def test_app_page_draws_the_tree_as_a_graph_or_as_the_list(
    client: httpx.AsyncClient,
) -> None:
    token, _ = issue_token(KEY, "admin")
    client.cookies.set("argocd.token", token)
    graph = await client.get(f"/applications/{NS}/app-0003")
    assert graph.status_code == 200
    assert 'aria-label="Resource graph"' in graph.text
    assert 'role="tree"' not in graph.text
    assert graph.text.count('class="gnode') == 6  # the Application and its 5 resources
    assert graph.text.count("marker-end=") == 5  # the edges
    assert 'aria-label="Deployment app-0003-0' in graph.text
    assert "part=live&amp;tree=graph" in graph.text  # live updates keep the view
    listed = await client.get(f"/applications/{NS}/app-0003?tree=list")
    assert 'role="tree"' in listed.text
    assert "Resource graph" not in listed.text
    assert "part=live&amp;tree=list" in listed.text
    live = await client.get(f"/applications/{NS}/app-0003?part=live&tree=graph")
    assert 'aria-label="Resource graph"' in live.text
    assert "<html" not in live.text


async def test_flux_page_shows_dependencies_and_hides_what_is_not_allowed() -> None:
    cluster = MemoryCluster()
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": NS},
            "data": {"server.secretkey": b64(KEY.decode())},
        }
    )
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": NS},
            "data": {"accounts.viewer": "login"},
        }
    )
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", "namespace": NS},
            "data": {"policy.csv": "p, viewer, kustomizations, get, flux-system/staging, allow"},
        }
    )
    for name, deps in (("staging", ["development"]), ("production", ["staging"])):
        cluster.add(
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": "flux-system"},
                "spec": {
                    "sourceRef": {"kind": "GitRepository", "name": "gitops"},
                    "dependsOn": [{"name": d} for d in deps],
                },
                "status": {"conditions": [{"type": "Ready", "status": "True", "message": "ok"}]},
            }
        )
    state = ServerState(cluster, NS, (NS, "flux-system"))
    await state.start()
    service = Service(state, cast(Kube, cluster), Policy())
    token, _ = issue_token(KEY, "viewer")
    transport = httpx.ASGITransport(app=make_app(service))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://server", cookies={"argocd.token": token}
    ) as c:
        page = await c.get("/flux")
        assert page.status_code == 200
        assert "flux-system/development" in page.text  # staging's dependsOn
        # The dependency graph shows what the user may see: no node for the others.
        assert 'aria-label="Dependency graph"' in page.text
        assert 'aria-label="Kustomization flux-system/staging: Healthy"' in page.text
        assert page.text.count('class="gnode') == 1
        assert "production" not in page.text
        listed = await c.get("/api/v1/kustomizations")
        assert [k["metadata"]["name"] for k in listed.json()["items"]] == ["staging"]
        denied = await c.post(
            "/api/v1/kustomizations/flux-system/staging/reconcile",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert denied.status_code == 403
    await state.stop()
