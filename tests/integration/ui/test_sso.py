"""OIDC sign-in against a real issuer served on the loopback (the test issuer of
``tests/unit/server/oidc_issuer.py`` behind uvicorn): the code flow with PKCE, the ID
token's checks, groups as RBAC subjects, ``scopes``, and AppProject roles' groups and
tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from gitsail.cli.main import app as cli
from gitsail.dev.cluster import Cluster, free_ports
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.controller.conftest import eventually
from tests.integration.ui.conftest import RBAC, RunningServer
from tests.integration.ui.test_api import bearer, two_apps
from tests.unit.server.oidc_issuer import CLIENT_ID, CLIENT_SECRET, Issuer

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def serve_issuer() -> AsyncIterator[Issuer]:
    (port,) = free_ports(1)
    # "localhost", not 127.0.0.1: another site than the server's, as a real issuer is.
    issuer = Issuer(f"http://localhost:{port}")
    uv = uvicorn.Server(
        uvicorn.Config(
            issuer.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(uv.serve())
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                r = await client.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration")
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        await eventually(up, timeout=20, what="the test issuer")
    try:
        yield issuer
    finally:
        uv.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 5)


async def configure_sso(api: Kube, server: RunningServer, issuer: Issuer) -> None:
    ns = server.namespace
    await api.merge_patch(
        "v1",
        "ConfigMap",
        "argocd-cm",
        {
            "data": {
                "oidc.config": (
                    f"name: TestIdP\nissuer: {issuer.url}\nclientID: {CLIENT_ID}\n"
                    "clientSecret: $oidc.test.clientSecret\n"
                    "requestedScopes: [openid, profile, email, groups]\n"
                    "requestedIDTokenClaims: {groups: {essential: true}}\n"
                )
            }
        },
        ns,
    )
    secret = base64.b64encode(CLIENT_SECRET.encode()).decode()
    await api.merge_patch(
        "v1", "Secret", "argocd-secret", {"data": {"oidc.test.clientSecret": secret}}, ns
    )
    await set_rbac(api, ns, {"policy.csv": RBAC + "g, team-a-devs, role:team-a\n"})

    async def ready() -> bool:
        with contextlib.suppress(Exception):
            provider = server.service.oidc()
            return provider is not None and provider.config.client_secret == CLIENT_SECRET
        return False

    await eventually(ready, timeout=20, what="the server reading oidc.config")


async def set_rbac(api: Kube, ns: str, data: dict[str, Any]) -> None:
    await api.merge_patch("v1", "ConfigMap", "argocd-rbac-cm", {"data": data}, ns)


async def sso_sign_in(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """The browser's round trip: gitsail → issuer → gitsail's callback."""
    start = await client.get(f"{url}/auth/login", params={"return_url": "/applications"})
    assert start.status_code == 303, start.text
    assert "gitsail.oidc" in start.cookies
    at_issuer = await client.get(start.headers["location"])
    assert at_issuer.status_code == 302, at_issuer.text
    back = at_issuer.headers["location"]
    assert back.startswith(f"{url}/auth/callback?")
    return await client.get(back)


def visible(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {a["metadata"]["name"] for a in response.json()["items"]}


async def test_oidc_sign_in_groups_and_scopes(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    url, ns = server.url, server.namespace
    await two_apps(api, server, git_repo)
    async with serve_issuer() as issuer:
        await configure_sso(api, server, issuer)
        async with httpx.AsyncClient(timeout=30) as client:
            page = await client.get(f"{url}/login")
            assert "Log in via TestIdP" in page.text

            done = await sso_sign_in(client, url)
            assert done.status_code == 200, done.text
            assert 'http-equiv="refresh"' in done.text
            assert issuer.token_requests == 1
            info = (await client.get(f"{url}/api/v1/session/userinfo")).json()
            assert info["username"] == "sso-user-1"
            assert info["groups"] == ["team-a-devs", "everyone"]
            # The group has role:team-a: team-a's app only.
            apps = await client.get(f"{url}/api/v1/applications")
            assert visible(apps) == {"a-web"}

            # scopes without groups: the group no longer counts, at once.
            await set_rbac(api, ns, {"scopes": "[email]"})

            async def groups_dropped() -> bool:
                return visible(await client.get(f"{url}/api/v1/applications")) == set()

            await eventually(groups_dropped, timeout=20, what="scopes: [email] applied")
            # A new sign-in carries the email claim; a g line on it gives a role.
            await set_rbac(
                api,
                ns,
                {"policy.csv": RBAC + "g, carol@example.com, role:readonly\n", "scopes": "[email]"},
            )
            client.cookies.clear()
            assert (await sso_sign_in(client, url)).status_code == 200

            async def by_email() -> bool:
                r = await client.get(f"{url}/api/v1/applications")
                return r.status_code == 200 and visible(r) == {"a-web", "b-web"}

            await eventually(by_email, timeout=20, what="the email claim as a subject")


async def test_oidc_refusals(server: RunningServer, api: Kube) -> None:
    url = server.url
    async with serve_issuer() as issuer:
        async with httpx.AsyncClient(timeout=30) as client:
            off = await client.get(f"{url}/auth/login")
            assert off.status_code == 404
            assert "not configured" in off.text
        await configure_sso(api, server, issuer)
        async with httpx.AsyncClient(timeout=30) as client:
            start = await client.get(f"{url}/auth/login")
            at_issuer = await client.get(start.headers["location"])
            back = httpx.URL(at_issuer.headers["location"])
            forged = back.copy_merge_params({"state": "not-the-state"})
            refused = await client.get(forged)
            assert refused.status_code == 401
            assert "state does not match" in refused.text
            # Without the state cookie (another browser): refused too.
            client.cookies.clear()
            assert (await client.get(back)).status_code == 401

        for tamper, message in (
            ({"nonce": "replayed"}, "nonce"),
            ({"aud": "someone-else"}, "another client"),
            ({"sub": "alice"}, "local account"),  # a local account's name
            ({"sub": "proj:team-a:ci"}, "role name"),
        ):
            issuer.tamper = tamper
            async with httpx.AsyncClient(timeout=30) as client:
                done = await sso_sign_in(client, url)
                assert done.status_code == 401, (tamper, done.text)
                assert message in done.text, (tamper, done.text)
                assert "argocd.token" not in done.cookies
                me = await client.get(f"{url}/api/v1/session/userinfo")
                assert me.status_code == 401
        issuer.tamper = {}
        issuer.sign_with_unpublished_key = True
        async with httpx.AsyncClient(timeout=30) as client:
            done = await sso_sign_in(client, url)
            assert done.status_code == 401, done.text
            assert "signature is not valid" in done.text  # the same kid, another key


async def test_project_roles_groups_and_tokens(
    server: RunningServer, api: Kube, git_repo: Workdir
) -> None:
    url, ns = server.url, server.namespace
    await two_apps(api, server, git_repo)
    await api.merge_patch(
        "argoproj.io/v1alpha1",
        "AppProject",
        "team-a",
        {
            "spec": {
                "roles": [
                    {
                        "name": "ci",
                        "policies": [
                            "p, proj:team-a:ci, applications, get, team-a/*, allow",
                            "p, proj:team-a:ci, applications, sync, team-a/*, allow",
                        ],
                        "groups": ["team-a-ci-group"],
                    },
                    {
                        # Outside its project: refused as a whole, grants nothing.
                        "name": "sneaky",
                        "policies": ["p, proj:team-a:sneaky, applications, get, default/*, allow"],
                    },
                ]
            }
        },
        ns,
    )
    params = {"appNamespace": ns}
    async with httpx.AsyncClient(timeout=30) as client:
        admin_login = await client.post(
            f"{url}/api/v1/session", json={"username": "admin", "password": server.admin_password}
        )
        admin = admin_login.json()["token"]
        created = await client.post(
            f"{url}/api/v1/projects/team-a/roles/ci/token",
            json={"expiresIn": 3600, "id": "ci-1"},
            headers=bearer(admin),
        )
        assert created.status_code == 200, created.text
        token = created.json()["token"]
        project = await api.get("argoproj.io/v1alpha1", "AppProject", "team-a", ns)
        assert project is not None
        (item,) = project["status"]["jwtTokensByRole"]["ci"]["items"]
        assert item["id"] == "ci-1"
        assert item["exp"] - item["iat"] == 3600
        (ci,) = [r for r in project["spec"]["roles"] if r["name"] == "ci"]
        assert ci["jwtTokens"] == [item]

        async def sees_own_project() -> bool:
            r = await client.get(f"{url}/api/v1/applications", headers=bearer(token))
            return r.status_code == 200 and visible(r) == {"a-web"}

        await eventually(sees_own_project, timeout=20, what="the role token accepted")
        other = await client.get(
            f"{url}/api/v1/applications/b-web", params=params, headers=bearer(token)
        )
        assert other.status_code == 404
        sync_other = await client.post(
            f"{url}/api/v1/applications/b-web/sync", json=params, headers=bearer(token)
        )
        assert sync_other.status_code == 404
        me = (await client.get(f"{url}/api/v1/session/userinfo", headers=bearer(token))).json()
        assert me["username"] == "proj:team-a:ci"

        # The sneaky role's token: valid, but its line is refused, so it sees nothing.
        sneaky = await client.post(
            f"{url}/api/v1/projects/team-a/roles/sneaky/token", json={}, headers=bearer(admin)
        )
        assert sneaky.status_code == 200, sneaky.text
        r = await client.get(f"{url}/api/v1/applications", headers=bearer(sneaky.json()["token"]))
        assert visible(r) == set()

        # A forged token for the role, not in the lists: 401.
        from gitsail.kinds.argo_appproject_roles import issue_role_token

        key = server.service.signing_key()
        unlisted, _ = issue_role_token(key, "team-a", "ci", token_id="never-recorded")
        r = await client.get(f"{url}/api/v1/applications", headers=bearer(unlisted))
        assert r.status_code == 401
        assert "revoked" in r.text

        # Revoked (deleted by its iat): 401.
        gone = await client.delete(
            f"{url}/api/v1/projects/team-a/roles/ci/token/{item['iat']}", headers=bearer(admin)
        )
        assert gone.status_code == 200, gone.text

        async def refused() -> bool:
            r = await client.get(f"{url}/api/v1/applications", headers=bearer(token))
            return r.status_code == 401

        await eventually(refused, timeout=20, what="the revoked role token refused")


async def run_cli(*args: str) -> str:
    """The CLI as a user runs it (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == 0, result.output
    return str(result.output)


async def test_proj_role_create_token_cli(
    server: RunningServer, api: Kube, git_repo: Workdir, cluster: Cluster
) -> None:
    """`gitsail proj role create-token|list-tokens|delete-token`, then the token at the
    server: accepted while listed, refused once deleted."""
    url, ns = server.url, server.namespace
    await two_apps(api, server, git_repo)
    await api.merge_patch(
        "argoproj.io/v1alpha1",
        "AppProject",
        "team-a",
        {
            "spec": {
                "roles": [
                    {
                        "name": "deploy",
                        "policies": ["p, proj:team-a:deploy, applications, get, team-a/*, allow"],
                    }
                ]
            }
        },
        ns,
    )
    common = ("--kubeconfig", str(cluster.kubeconfig), "-n", ns)
    token = (
        await run_cli("proj", "role", "create-token", "team-a", "deploy", "-e", "2h", "-t", *common)
    ).strip()
    listed = json.loads(
        await run_cli("proj", "role", "list-tokens", "team-a", "deploy", "-o", "json", *common)
    )
    (entry,) = listed
    assert entry["expires-at"] - entry["issued-at"] == 7200
    async with httpx.AsyncClient(timeout=30) as client:

        async def accepted() -> bool:
            r = await client.get(f"{url}/api/v1/applications", headers=bearer(token))
            return r.status_code == 200 and visible(r) == {"a-web"}

        await eventually(accepted, timeout=20, what="the CLI's role token accepted")
        await run_cli(
            "proj", "role", "delete-token", "team-a", "deploy", str(entry["issued-at"]), *common
        )

        async def refused() -> bool:
            r = await client.get(f"{url}/api/v1/applications", headers=bearer(token))
            return r.status_code == 401

        await eventually(refused, timeout=20, what="the deleted token refused")
    missing = await asyncio.to_thread(
        CliRunner().invoke, cli, ["proj", "role", "create-token", "team-a", "nope", *common]
    )
    assert missing.exit_code != 0
    assert "has no role nope" in missing.output


async def test_an_id_token_as_a_bearer_token(server: RunningServer, api: Kube) -> None:
    """What `argocd login --sso` sends: the issuer's ID token itself, verified as at sign-in
    (but for the nonce), with its groups."""
    url = server.url
    async with serve_issuer() as issuer:
        await configure_sso(api, server, issuer)
        async with httpx.AsyncClient(timeout=30) as client:
            token = issuer.id_token(nonce=None)
            me = await client.get(f"{url}/api/v1/session/userinfo", headers=bearer(token))
            assert me.status_code == 200, me.text
            assert me.json()["username"] == "sso-user-1"
            assert me.json()["groups"] == ["team-a-devs", "everyone"]
            issuer.tamper = {"aud": "another-client"}
            other = await client.get(
                f"{url}/api/v1/session/userinfo", headers=bearer(issuer.id_token(None))
            )
            assert other.status_code == 401, other.text
            assert "another client" in other.text
            issuer.tamper = {"sub": "admin"}  # the local admin's name: never
            admin = await client.get(
                f"{url}/api/v1/applications", headers=bearer(issuer.id_token(None))
            )
            assert admin.status_code == 401, admin.text
            issuer.tamper = {}
            issuer.sign_with_unpublished_key = True
            forged = await client.get(
                f"{url}/api/v1/session/userinfo", headers=bearer(issuer.id_token(None))
            )
            assert forged.status_code == 401
            # As a cookie (not a bearer header) it is not taken: cookies hold gitsail's own.
            cookie = await client.get(
                f"{url}/api/v1/session/userinfo", headers={"Cookie": f"argocd.token={token}"}
            )
            assert cookie.status_code == 401
