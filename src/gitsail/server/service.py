"""What the API and the pages do, without HTTP: sign-in, permission checks, reads, actions.

Actions go through the same API objects as the CLIs, with the CLIs' functions: a sync is
the Application's ``operation`` field (``gitsail.cli.operation.sync_operation`` and
``request_operation``), a refresh its ``argocd.argoproj.io/refresh`` annotation, a Flux
reconcile the ``reconcile.fluxcd.io/requestedAt`` annotation, suspend and resume
``spec.suspend``. The controller does the work. Every write is recorded as a Kubernetes Event
on the object, naming the user (``gitsail-server`` component).

A second identical sync request while the first is still pending (a double click) is
answered with the operation already there, not refused and not written twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from gitsail.app.engine import AppEngine, Comparison, ComparisonError
from gitsail.cli.operation import (
    API_VERSION,
    ApplicationGone,
    NoOperation,
    OperationInProgress,
    check_sync_allowed,
    request_operation,
    request_refresh,
    request_termination,
    rollback_operation,
    sync_operation,
)
from gitsail.controller.events import EventRecorder
from gitsail.kinds.argo_application import App, AppSpecError
from gitsail.kinds.argo_appproject_admission import in_process_admission
from gitsail.kinds.argo_appproject_roles import (
    RoleError,
    create_role_token,
    delete_role_token,
    roles_of,
    token_ids,
)
from gitsail.kinds.flux_receiver import REQUESTED_AT, rfc3339_nano
from gitsail.kube import Conflict, Kube, KubeError, NotFound
from gitsail.model import Obj, ResourceKey
from gitsail.policy import Policy
from gitsail.render import Renderer, RenderError
from gitsail.server.auth import (
    Account,
    AuthError,
    Claims,
    LoginLimiter,
    accounts_of,
    hash_password,
    issue_token,
    verify_password,
    verify_token,
)
from gitsail.server.history import drift_rows, revision_diff, tree_pod
from gitsail.server.oidc import OidcError, OidcProvider, claim_values, parse_oidc_config
from gitsail.server.rbac import Policy as RbacPolicy
from gitsail.server.rbac import RbacError, app_object, parse_policy
from gitsail.server.state import KINDS, KindSpec, ServerState
from gitsail.server.views import resource_tree
from gitsail.source import GitSource, HelmRepoSource, SourceError

__all__ = ["ApiError", "Service", "User"]

log = logging.getLogger(__name__)

INITIAL_ADMIN_SECRET = "argocd-initial-admin-secret"  # noqa: S105 (a name)
DIFF_CACHE_SECONDS = 30.0
DIFF_CONCURRENCY = 2
MAX_COOKIE_TOKEN = 4000  # browsers keep cookies of at most 4096 bytes
MAX_DECISIONS = 100_000  # remembered RBAC decisions (cleared whenever the policy changes)


class ApiError(Exception):
    """An answer other than success: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    name: str
    claims: Claims
    groups: tuple[str, ...] = ()


@dataclass
class Service:
    state: ServerState
    kube: Kube
    policy: Policy = field(default_factory=Policy)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    revoked: dict[str, int] = field(default_factory=dict)  # session token id -> expiry
    _rbac: tuple[str, RbacPolicy] | None = None
    _oidc: tuple[str, OidcProvider | None] | None = None
    oidc_transport: httpx.AsyncBaseTransport | None = None  # unit tests: an in-memory issuer
    _decisions: dict[tuple[str, tuple[str, ...], str, str, str], bool] = field(default_factory=dict)
    _engine: AppEngine | None = None
    _diffs: dict[tuple[str, str, str], tuple[float, Comparison]] = field(default_factory=dict)
    _renders: dict[tuple[str, str, str, str], tuple[Obj, ...]] = field(default_factory=dict)
    _diff_gate: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(DIFF_CONCURRENCY)
    )
    recorder: EventRecorder | None = None

    def __post_init__(self) -> None:
        if self.recorder is None:
            self.recorder = EventRecorder(self.kube, component="gitsail-server")

    # -- keys, accounts, the first admin ----------------------------------------------

    @property
    def control_namespace(self) -> str:
        return self.state.control_namespace

    def signing_key(self) -> bytes:
        key = self.state.settings_data("argocd-secret").get("server.secretkey", "")
        if len(key) < 16:
            raise ApiError(503, "the server's signing key is not loaded yet; retry shortly", 5)
        return key.encode()

    def accounts(self) -> dict[str, Account]:
        return accounts_of(
            self.state.settings_data("argocd-cm"), self.state.settings_data("argocd-secret")
        )

    async def ensure_admin(self) -> str | None:
        """Create ``server.secretkey`` and the admin's first password when missing.

        The password is written to ``argocd-initial-admin-secret`` (created once: a second
        server replica that loses the race reads the winner's), its bcrypt hash to
        ``argocd-secret``'s ``admin.password``. Returns the new password, or None when one
        was already set.
        """
        ns = self.control_namespace
        secret = await self.kube.get("v1", "Secret", "argocd-secret", ns)
        data = (secret or {}).get("data") or {}
        patch: dict[str, str] = {}
        if "server.secretkey" not in data:
            patch["server.secretkey"] = secrets.token_urlsafe(32)
        password: str | None = None
        if "admin.password" not in data:
            made = secrets.token_urlsafe(12)
            password = made
            try:
                await self.kube.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": INITIAL_ADMIN_SECRET, "namespace": ns},
                        "type": "Opaque",
                        "stringData": {"password": password},
                    }
                )
            except Conflict:
                existing = await self.kube.get("v1", "Secret", INITIAL_ADMIN_SECRET, ns) or {}
                encoded = str((existing.get("data") or {}).get("password") or "")
                password = base64.b64decode(encoded).decode() if encoded else made
            patch["admin.password"] = await asyncio.to_thread(hash_password, password)
            patch["admin.passwordMtime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not patch:
            return None
        encoded_patch = {k: base64.b64encode(v.encode()).decode() for k, v in patch.items()}
        if secret is None:
            try:
                await self.kube.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "argocd-secret", "namespace": ns},
                        "data": encoded_patch,
                    }
                )
                return password
            except Conflict:
                pass
        # Only keys that are still missing: never overwrite what another replica wrote.
        current = await self.kube.get("v1", "Secret", "argocd-secret", ns) or {}
        missing = {k: v for k, v in encoded_patch.items() if k not in (current.get("data") or {})}
        if missing:
            await self.kube.merge_patch("v1", "Secret", "argocd-secret", {"data": missing}, ns)
        return password if "admin.password" in missing else None

    # -- sign-in ----------------------------------------------------------------------

    async def login(self, username: str, password: str) -> tuple[str, Claims]:
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise ApiError(422, "username and password are strings")
        if len(username) > 253 or len(password) > 1024:
            raise ApiError(401, "Invalid username or password")
        wait = self.limiter.retry_after(username)
        if wait > 0:
            raise ApiError(
                429, f"too many failed logins for {username}; retry later", int(wait) + 1
            )
        account = self.accounts().get(username)
        ok = (
            account is not None
            and account.enabled
            and "login" in account.capabilities
            and await asyncio.to_thread(verify_password, password, account.password_hash)
        )
        if not ok:
            self.limiter.failed(username)
            raise ApiError(401, "Invalid username or password")
        self.limiter.succeeded(username)
        return issue_token(self.signing_key(), username)

    def logout(self, claims: Claims) -> None:
        now = int(time.time())
        for jti, expiry in list(self.revoked.items()):
            if expiry and expiry < now:
                del self.revoked[jti]
        self.revoked[claims.token_id] = claims.expires

    def authenticate(self, token: str) -> User:
        try:
            claims = verify_token(self.signing_key(), token)
        except AuthError as exc:
            raise ApiError(401, f"invalid session: {exc}") from None
        if claims.token_id in self.revoked:
            raise ApiError(401, "invalid session: token is revoked")
        if claims.kind == "sso":
            return self._sso_user(claims)
        if claims.kind == "project":
            return self._project_user(claims)
        account = self.accounts().get(claims.subject)
        if account is None or not account.enabled:
            raise ApiError(401, f"invalid session: account {claims.subject} is not enabled")
        if claims.kind == "apiKey" and not any(
            t.get("id") == claims.token_id for t in account.tokens
        ):
            raise ApiError(401, "invalid session: token is revoked")
        return User(claims.subject, claims)

    async def authenticate_bearer(self, token: str) -> User:
        """A bearer token: one of this server's, or else an ID token of the OIDC issuer
        (what ``argocd login --sso`` sends), verified as at sign-in but for the nonce,
        which only the sign-in that asked for it knows."""
        try:
            return self.authenticate(token)
        except ApiError as first:
            try:
                provider = self.oidc()
            except ApiError:
                provider = None
            if provider is None or not _is_rs256(token):
                raise first from None
        try:
            id_claims = await provider.verify(token, nonce=None)
        except OidcError as exc:
            raise ApiError(401, f"invalid session: {exc}") from None
        subject = self._sso_subject(id_claims)
        try:
            values = claim_values(id_claims, self.rbac().scopes)
        except OidcError as exc:
            raise ApiError(401, f"invalid session: {exc}") from None
        scoped = tuple((k, tuple(v)) for k, v in values.items())
        jti = str(id_claims.get("jti") or hashlib.sha256(token.encode()).hexdigest()[:32])
        claims = Claims(subject, jti, int(id_claims.get("exp") or 0), "sso", (), scoped)
        if claims.token_id in self.revoked:
            raise ApiError(401, "invalid session: token is revoked")
        return self._sso_user(claims)

    def _sso_user(self, claims: Claims) -> User:
        """A user signed in through OIDC: their RBAC subjects besides the name are the
        values of the claims ``scopes`` names now (a claim removed from ``scopes`` stops
        counting at once; one added counts from the next sign-in)."""
        if self.oidc() is None:
            raise ApiError(401, "invalid session: SSO is no longer configured")
        scopes = self.rbac().scopes
        groups = tuple(v for name, values in claims.scope_claims if name in scopes for v in values)
        return User(claims.subject, claims, groups)

    def _project_user(self, claims: Claims) -> User:
        """A project role's token: valid while the role exists and lists the token's id."""
        parts = claims.subject.split(":")
        if len(parts) != 3 or parts[0] != "proj":
            raise ApiError(401, "invalid session: not a project role's token")
        _, project, role = parts
        obj = self.state.get("projects", self.control_namespace, project) if project else None
        if obj is None:
            raise ApiError(401, f"invalid session: project {project} does not exist")
        try:
            names = {r.name for r in roles_of(obj)}
        except RoleError:
            names = set()
        if role not in names:
            raise ApiError(401, f"invalid session: project {project} has no role {role}")
        if claims.token_id not in token_ids(obj, role):
            raise ApiError(401, "invalid session: token is revoked")
        return User(claims.subject, claims)

    # -- OIDC ---------------------------------------------------------------------------

    def oidc(self) -> OidcProvider | None:
        """The issuer of ``oidc.config`` (None when SSO is not configured); 503 when the
        configuration cannot be used. Kept (with its cached keys) until the settings change."""
        version = (
            f"{self.state.settings_version('argocd-cm')}/"
            f"{self.state.settings_version('argocd-secret')}"
        )
        if self._oidc is None or self._oidc[0] != version:
            try:
                config = parse_oidc_config(
                    self.state.settings_data("argocd-cm"), self.state.settings_data("argocd-secret")
                )
            except OidcError as exc:
                raise ApiError(503, f"SSO is misconfigured: {exc}") from None
            old = self._oidc[1] if self._oidc is not None else None
            if config is None:
                provider = None
            elif old is not None and old.config == config:
                provider = old
            else:
                provider = OidcProvider(config, transport=self.oidc_transport)
            self._oidc = (version, provider)
        return self._oidc[1]

    def external_url(self) -> str:
        """``url`` of ``argocd-cm``: the server's address as browsers see it ("" unset)."""
        return str(self.state.settings_data("argocd-cm").get("url") or "").rstrip("/")

    def _sso_subject(self, id_claims: dict[str, Any]) -> str:
        """The ID token's ``sub``; refused when it is a local account's or a project role's
        name, or a role's: a sign-in elsewhere never becomes a local identity."""
        subject = str(id_claims["sub"])
        if subject in self.accounts() or subject.startswith(("proj:", "role:")):
            raise ApiError(
                401, f"SSO subject {subject!r} is a local account or a role name: refused"
            )
        return subject

    async def sso_login(self, id_claims: dict[str, Any]) -> tuple[str, Claims]:
        """A session for the verified ID token's subject, with the values of the claims
        ``scopes`` names. Refused for a subject that is a local account's or a project
        role's name: a sign-in elsewhere never becomes a local identity."""
        subject = self._sso_subject(id_claims)
        try:
            values = claim_values(id_claims, self.rbac().scopes)
        except OidcError as exc:
            raise ApiError(401, f"SSO sign-in refused: {exc}") from None
        token, claims = issue_token(self.signing_key(), subject, kind="sso", scope_claims=values)
        if len(token) > MAX_COOKIE_TOKEN:
            raise ApiError(401, "SSO sign-in refused: the groups do not fit in a session cookie")
        return token, claims

    async def create_project_token(
        self, user: User, project: str, role: str, seconds: int, token_id: str | None
    ) -> dict[str, Any]:
        """A token of a project role, recorded in the AppProject (``projects, update``)."""
        self.get(user, "projects", self.control_namespace, project, "update")
        if seconds < 0 or seconds > 10 * 365 * 24 * 3600:
            raise ApiError(422, "expiresIn is between 0 (no expiry) and ten years in seconds")
        try:
            token, record = await create_role_token(
                self.kube,
                self.control_namespace,
                project,
                role,
                self.signing_key(),
                seconds=seconds,
                token_id=token_id,
            )
        except RoleError as exc:
            raise ApiError(404 if "has no role" in str(exc) else 400, str(exc)) from None
        obj = self.state.get("projects", self.control_namespace, project) or {}
        await self._audit(
            {**obj, "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject"},
            "ResourceUpdated",
            f"{user.name} created a token of role {role} (id {record['id']})",
        )
        return {"token": token}

    async def delete_project_token(
        self, user: User, project: str, role: str, issued_at: int
    ) -> None:
        self.get(user, "projects", self.control_namespace, project, "update")
        try:
            await delete_role_token(self.kube, self.control_namespace, project, role, issued_at)
        except RoleError as exc:
            raise ApiError(404, str(exc)) from None
        obj = self.state.get("projects", self.control_namespace, project) or {}
        await self._audit(
            {**obj, "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject"},
            "ResourceUpdated",
            f"{user.name} deleted the token of role {role} issued at {issued_at}",
        )

    async def create_api_token(self, user: User, account_name: str, seconds: int) -> dict[str, Any]:
        """A new API token of ``account_name`` (``apiKey`` capability), recorded in
        ``argocd-secret`` so deleting its entry revokes it."""
        self.require(user, "accounts", "update", account_name)
        account = self.accounts().get(account_name)
        if account is None or "apiKey" not in account.capabilities:
            raise ApiError(
                404, f"account {account_name} does not exist or has no apiKey capability"
            )
        if seconds < 0 or seconds > 10 * 365 * 24 * 3600:
            raise ApiError(422, "expiresIn is between 0 (no expiry) and ten years in seconds")
        token, claims = issue_token(
            self.signing_key(), account_name, kind="apiKey", seconds=seconds
        )
        entries = [
            *account.tokens,
            {"id": claims.token_id, "iat": int(time.time()), "exp": claims.expires},
        ]
        await self._write_tokens(account_name, entries)
        await self._audit_account(
            user, account_name, f"{user.name} created API token {claims.token_id}"
        )
        return {"token": token, "id": claims.token_id}

    async def delete_api_token(self, user: User, account_name: str, token_id: str) -> None:
        self.require(user, "accounts", "update", account_name)
        account = self.accounts().get(account_name)
        if account is None or not any(t.get("id") == token_id for t in account.tokens):
            raise ApiError(404, f"account {account_name} has no token {token_id}")
        await self._write_tokens(
            account_name, [t for t in account.tokens if t.get("id") != token_id]
        )

    async def _write_tokens(self, account_name: str, entries: list[dict[str, Any]]) -> None:
        value = base64.b64encode(json.dumps(entries).encode()).decode()
        await self.kube.merge_patch(
            "v1",
            "Secret",
            "argocd-secret",
            {"data": {f"accounts.{account_name}.tokens": value}},
            self.control_namespace,
        )

    async def _audit_account(self, user: User, account_name: str, message: str) -> None:
        secret = self.state.settings.get("argocd-secret")
        obj = secret.get(self.control_namespace, "argocd-secret") if secret else None
        if obj is not None and self.recorder is not None:
            await self.recorder.record(
                {"apiVersion": "v1", "kind": "Secret", "metadata": obj.get("metadata") or {}},
                reason="AccountUpdated",
                message=message,
            )

    # -- permissions ------------------------------------------------------------------

    def _projects(self) -> list[Obj]:
        """The AppProjects of the control namespace (only those define roles)."""
        return [
            p
            for p in self.state.items("projects")
            if (p.get("metadata") or {}).get("namespace") == self.control_namespace
        ]

    def rbac(self) -> RbacPolicy:
        """The policy of ``argocd-rbac-cm`` and of the AppProjects' roles, built again only
        when the ConfigMap or a project changed."""
        version = (
            f"{self.state.settings_version('argocd-rbac-cm')}/{self.state.version('projects')}"
        )
        if self._rbac is None or self._rbac[0] != version:
            data = self.state.settings_data("argocd-rbac-cm")
            try:
                policy = parse_policy(data)
            except RbacError as exc:
                log.error("argocd-rbac-cm is refused (only the built-in policy applies): %s", exc)
                policy = parse_policy(None)
            policy, refused = policy.with_project_roles(self._projects())
            for error in refused:
                log.error("an AppProject role is refused (it grants nothing): %s", error)
            self._rbac = (version, policy)
            self._decisions.clear()
        return self._rbac[1]

    def can(self, user: User, resource: str, action: str, obj: str) -> bool:
        policy = self.rbac()  # first: it clears the decisions when the policy changed
        key = (user.name, user.groups, resource, action, obj)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) > MAX_DECISIONS:
                self._decisions.clear()
            decision = policy.enforce(user.name, resource, action, obj, user.groups)
            self._decisions[key] = decision
        return decision

    def require(self, user: User, resource: str, action: str, obj: str) -> None:
        if not self.can(user, resource, action, obj):
            raise ApiError(403, f"permission denied: {resource}, {action}, {obj}, sub: {user.name}")

    def object_of(self, spec: KindSpec, obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if spec.kind == "Application":
            project = str((obj.get("spec") or {}).get("project") or "default")
            return app_object(project, ns, name, self.control_namespace)
        if spec.kind == "ApplicationSet":
            project = str(
                ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("project")
                or "default"
            )
            return app_object(project, ns, name, self.control_namespace)
        if spec.kind == "AppProject":
            return name
        return f"{ns}/{name}"

    def visible(self, user: User, spec: KindSpec, objs: list[Obj]) -> list[Obj]:
        return [o for o in objs if self.can(user, spec.resource, "get", self.object_of(spec, o))]

    def get(self, user: User, path: str, namespace: str, name: str, action: str = "get") -> Obj:
        spec = KINDS[path]
        obj = self.state.get(path, namespace, name)
        # Not found and not allowed answer alike, so names cannot be probed.
        if obj is None or not self.can(user, spec.resource, "get", self.object_of(spec, obj)):
            what = "application" if spec.kind == "Application" else spec.kind
            raise ApiError(404, f"{what} {name} not found in namespace {namespace}")
        if action != "get":
            self.require(user, spec.resource, action, self.object_of(spec, obj))
        return obj

    # -- Application actions ----------------------------------------------------------

    async def _audit(self, obj: Obj, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.record(obj, reason=reason, message=message)

    async def sync(self, user: User, namespace: str, name: str, body: dict[str, Any]) -> Obj:
        current = self.get(user, "applications", namespace, name, "sync")
        revision = body.get("revision") or None
        if revision is not None and (not isinstance(revision, str) or len(revision) > 256):
            raise ApiError(422, "revision is a string of at most 256 characters")
        dry_run = bool(body.get("dryRun", False))
        prune = bool(body.get("prune", False))
        resources = _resource_keys(body.get("resources"))
        options_field = body.get("syncOptions") or {}
        options = options_field.get("items") if isinstance(options_field, dict) else options_field
        if options is not None and (
            not isinstance(options, list)
            or not all(isinstance(o, str) and len(o) < 200 for o in options)
            or len(options) > 50
        ):
            raise ApiError(422, "syncOptions.items is a list of strings")
        force = bool(((body.get("strategy") or {}).get("apply") or {}).get("force"))
        if force:
            options = [*(options or []), "Force=true"]
        refusal = check_sync_allowed(current, revision, dry_run)
        if refusal:
            raise ApiError(400, refusal)
        try:
            App.from_application(current)
        except AppSpecError as exc:
            raise ApiError(400, f"the application's spec cannot be read: {exc}") from None
        operation = sync_operation(
            current,
            revision=revision,
            prune=prune,
            dry_run=dry_run,
            resources=resources,
            sync_options=options,
            initiated_by={"username": user.name},
        )
        try:
            written = await request_operation(self.kube, namespace, name, operation)
        except OperationInProgress:
            latest = await self.kube.get(API_VERSION, "Application", name, namespace) or {}
            if latest.get("operation") == operation:
                return latest  # the same request again (a double click): already asked
            raise ApiError(
                409, f"another operation is already in progress on application {namespace}/{name}"
            ) from None
        except ApplicationGone as exc:
            raise ApiError(404, str(exc)) from None
        what = "dry run" if dry_run else "sync"
        await self._audit(
            written,
            "OperationStarted",
            f"{user.name} initiated {what} to {operation['sync']['revision']}",
        )
        return written

    async def refresh(self, user: User, namespace: str, name: str, hard: bool) -> Obj:
        self.get(user, "applications", namespace, name)
        try:
            obj = await request_refresh(self.kube, namespace, name, hard=hard)
        except ApplicationGone as exc:
            raise ApiError(404, str(exc)) from None
        what = "hard refresh" if hard else "refresh"
        await self._audit(obj, "ResourceUpdated", f"{user.name} requested {what}")
        return obj

    async def rollback(
        self, user: User, namespace: str, name: str, history_id: int, prune: bool, dry_run: bool
    ) -> Obj:
        current = self.get(user, "applications", namespace, name, "sync")
        if ((current.get("spec") or {}).get("syncPolicy") or {}).get("automated") is not None:
            raise ApiError(400, "rollback cannot be initiated when auto-sync is enabled")
        entries = (current.get("status") or {}).get("history") or []
        entry = next(
            (h for h in entries if isinstance(h, dict) and h.get("id") == history_id), None
        )
        if entry is None:
            raise ApiError(404, f"application {name} has no history entry {history_id}")
        operation = rollback_operation(
            current, entry, prune=prune, dry_run=dry_run, initiated_by={"username": user.name}
        )
        try:
            written = await request_operation(self.kube, namespace, name, operation)
        except ApplicationGone as exc:
            raise ApiError(404, str(exc)) from None
        except OperationInProgress:
            raise ApiError(
                409, f"another operation is already in progress on application {namespace}/{name}"
            ) from None
        await self._audit(
            written, "OperationStarted", f"{user.name} initiated rollback to {history_id}"
        )
        return written

    async def terminate(self, user: User, namespace: str, name: str) -> Obj:
        """Stop the Application's operation (``gitsail.cli.operation.request_termination``).

        A running one is asked to stop as Argo CD does, through the Application only:
        ``status.operationState.phase`` becomes ``Terminating``. The controller checks it
        before each sync wave and while it waits, starts nothing more and ends the operation
        as Failed, "Operation terminated". One the controller has not started yet is
        withdrawn (its ``operation`` field removed).
        """
        self.get(user, "applications", namespace, name, "sync")
        try:
            obj, what = await request_termination(self.kube, namespace, name)
        except NoOperation as exc:
            raise ApiError(400, str(exc)) from None
        except ApplicationGone as exc:
            raise ApiError(404, str(exc)) from None
        except Conflict:
            raise ApiError(409, "the operation kept changing meanwhile; retry") from None
        if what == "terminating":
            await self._audit(
                obj, "OperationTerminated", f"{user.name} terminated the running operation"
            )
        elif what == "withdrawn":
            await self._audit(
                obj, "OperationTerminated", f"{user.name} withdrew the pending operation"
            )
        return obj

    async def delete(self, user: User, namespace: str, name: str, cascade: bool) -> None:
        current = self.get(user, "applications", namespace, name, "delete")
        finalizers = [
            f for f in (current.get("metadata") or {}).get("finalizers") or [] if isinstance(f, str)
        ]
        want = "resources-finalizer.argocd.argoproj.io"
        if cascade and want not in finalizers:
            finalizers.append(want)
        if not cascade:
            finalizers = [f for f in finalizers if not f.startswith("resources-finalizer.argocd")]
        await self.kube.merge_patch(
            API_VERSION,
            "Application",
            name,
            {"metadata": {"finalizers": finalizers or None}},
            namespace,
        )
        await self._audit(
            current,
            "ResourceDeleted",
            f"{user.name} deleted application" + ("" if cascade else " (resources kept)"),
        )
        with contextlib.suppress(NotFound):
            await self.kube.delete(API_VERSION, "Application", name, namespace)

    async def events(self, user: User, path: str, namespace: str, name: str) -> list[Obj]:
        obj = self.get(user, path, namespace, name)
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        items = await self.kube.list(
            "v1",
            "Event",
            namespace,
            field_selector=f"involvedObject.name={name},involvedObject.uid={uid}",
        )
        items.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return items[-200:]

    # -- diffs ------------------------------------------------------------------------

    def engine(self) -> AppEngine:
        if self._engine is None:
            self._engine = AppEngine(
                self.kube,
                control_namespace=self.control_namespace,
                git=GitSource(policy=self.policy),
                helm_repos=HelmRepoSource(policy=self.policy),
                renderer=Renderer(policy=self.policy),
                admission=in_process_admission(self.kube, self.control_namespace),
            )
        return self._engine

    async def compare(self, user: User, namespace: str, name: str) -> Comparison:
        """The live diff of every resource (Secrets redacted by the diff itself)."""
        obj = self.get(user, "applications", namespace, name)
        meta = obj.get("metadata") or {}
        revision = str(((obj.get("status") or {}).get("sync") or {}).get("revision") or "")
        key = (namespace, name, f"{meta.get('generation')}/{revision}")
        cached = self._diffs.get(key)
        if cached is not None and time.monotonic() - cached[0] < DIFF_CACHE_SECONDS:
            return cached[1]
        try:
            app = App.from_application(obj)
        except AppSpecError as exc:
            raise ApiError(400, f"the application's spec cannot be read: {exc}") from None
        async with self._diff_gate:
            try:
                comparison = await self.engine().compare(app)
            except ComparisonError as exc:
                raise ApiError(502, f"comparison failed: {exc}") from None
            except KubeError as exc:
                raise ApiError(502, f"comparison failed: {exc}") from None
        if len(self._diffs) > 100:
            self._diffs.clear()
        self._diffs[key] = (time.monotonic(), comparison)
        return comparison

    async def _render_entry(self, obj: Obj, entry: dict[str, Any]) -> tuple[Obj, ...]:
        """The objects a history entry deployed: its source at its revision, rendered again
        (the entry's own source when it has one, so a later change of path shows)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        source = entry.get("source")
        if (
            isinstance(source, dict)
            and source.get("repoURL")
            and isinstance(spec.get("source"), dict)
        ):
            obj = {**obj, "spec": {**spec, "source": source}}
        revision = str(entry.get("revision") or "")
        if not revision:
            raise ApiError(400, f"history entry {entry.get('id')} names no revision")
        key = (
            str(meta.get("namespace")),
            str(meta.get("name")),
            json.dumps(source, sort_keys=True),
            revision,
        )
        cached = self._renders.get(key)
        if cached is not None:
            return cached
        try:
            app = App.from_application(obj)
        except AppSpecError as exc:
            raise ApiError(400, f"the application's spec cannot be read: {exc}") from None
        async with self._diff_gate:
            try:
                engine = self.engine()
                artifact = await engine.fetch(app, revision)
                rendered = await engine.render(app, artifact)
            except (SourceError, RenderError, KubeError) as exc:
                raise ApiError(502, f"revision {revision[:12]} cannot be rendered: {exc}") from None
        if len(self._renders) > 50:
            self._renders.clear()
        self._renders[key] = rendered.manifests
        return rendered.manifests

    async def revision_diff(
        self, user: User, namespace: str, name: str, from_id: int, to_id: int
    ) -> dict[str, Any]:
        """The resources that differ between two history entries (Secrets masked)."""
        obj = self.get(user, "applications", namespace, name)
        entries = {
            h.get("id"): h
            for h in (obj.get("status") or {}).get("history") or []
            if isinstance(h, dict)
        }
        ends = []
        for wanted in (from_id, to_id):
            entry = entries.get(wanted)
            if entry is None:
                raise ApiError(404, f"application {name} has no history entry {wanted}")
            ends.append(entry)
        old, new = [await self._render_entry(obj, e) for e in ends]
        destination = str(((obj.get("spec") or {}).get("destination") or {}).get("namespace") or "")
        labels = [f"#{e.get('id')} {str(e.get('revision') or '')[:12]}" for e in ends]
        return {
            "from": {"id": from_id, "revision": ends[0].get("revision")},
            "to": {"id": to_id, "revision": ends[1].get("revision")},
            "items": revision_diff(old, new, labels[0], labels[1], destination),
        }

    async def drift(self, user: User, namespace: str, name: str) -> dict[str, Any]:
        """Who changed each out-of-sync field, now (managedFields) and as last reported by
        the controller (``status.drift``)."""
        obj = self.get(user, "applications", namespace, name)
        comparison = await self.compare(user, namespace, name)
        reported = (obj.get("status") or {}).get("drift") or []
        return {
            "items": drift_rows(comparison.diffs, comparison.live, self.engine().field_manager),
            "reported": [r for r in reported if isinstance(r, dict)][:500],
        }

    async def pod_logs(
        self,
        user: User,
        namespace: str,
        name: str,
        pod_namespace: str,
        pod: str,
        container: str | None,
        tail_lines: int,
    ) -> dict[str, Any]:
        """The logs of a Pod of the app's tree (``logs, get`` on the app). A cluster that
        has none (kwok's Pods have no kubelet) answers with ``available: false`` and the
        API server's message."""
        obj = self.get(user, "applications", namespace, name)
        self.require(user, "logs", "get", self.object_of(KINDS["applications"], obj))
        tree = resource_tree(obj, await self.state.derived_items())
        if tree_pod(tree["nodes"], pod_namespace, pod) is None:
            raise ApiError(404, f"pod {pod_namespace}/{pod} is not in application {name}'s tree")
        out: dict[str, Any] = {
            "namespace": pod_namespace,
            "podName": pod,
            "container": container or "",
        }
        try:
            text = await self.kube.pod_logs(
                pod, pod_namespace, container=container, tail_lines=tail_lines
            )
        except NotFound:
            raise ApiError(404, f"pod {pod_namespace}/{pod} not found") from None
        except KubeError as exc:
            return {**out, "available": False, "content": "", "message": str(exc)}
        return {
            **out,
            "available": bool(text),
            "content": text,
            "message": "" if text else "the pod has written no logs",
        }

    # -- Flux actions -----------------------------------------------------------------

    async def flux_action(
        self, user: User, path: str, namespace: str, name: str, action: str
    ) -> Obj:
        spec = KINDS[path]
        assert spec.flux is not None
        self.get(user, path, namespace, name, action)
        stamp = rfc3339_nano(datetime.now(UTC))
        if action == "reconcile":
            patch: dict[str, Any] = {"metadata": {"annotations": {REQUESTED_AT: stamp}}}
        elif action == "suspend":
            patch = {"spec": {"suspend": True}}
        elif action == "resume":
            patch = {"spec": {"suspend": False}, "metadata": {"annotations": {REQUESTED_AT: stamp}}}
        else:
            raise ApiError(404, f"no action {action}")
        try:
            obj = await self.kube.merge_patch(
                spec.api_version, spec.kind, name, patch, namespace, field_manager="gitsail-server"
            )
        except NotFound:
            raise ApiError(404, f"{spec.kind} {name} not found in namespace {namespace}") from None
        await self._audit(obj, "ResourceUpdated", f"{user.name} requested {action}")
        return obj


def _is_rs256(token: str) -> bool:
    """Whether a token's header says RS256 (an issuer's ID token, not one of ours)."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        return False
    return isinstance(header, dict) and header.get("alg") == "RS256"


def _resource_keys(value: Any) -> list[ResourceKey]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 1000:
        raise ApiError(422, "resources is a list of {group, kind, namespace, name}")
    out = []
    for item in value:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("kind"), str)
            or not isinstance(item.get("name"), str)
        ):
            raise ApiError(422, "resources is a list of {group, kind, namespace, name}")
        out.append(
            ResourceKey(
                str(item.get("group") or ""),
                item["kind"],
                str(item.get("namespace") or ""),
                item["name"],
            )
        )
    return out
