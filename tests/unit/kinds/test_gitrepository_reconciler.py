"""The GitRepository reconciler against in-memory fakes of its seams (cluster, git) and a
fake clock: status as Flux writes it, one status patch per reconcile and none when nothing
changed, errors that say retry or stall, the artifact kept on failure."""

from __future__ import annotations

import asyncio
import base64
import copy
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.flux_gitrepository_reconciler import FINALIZER, GitRepositoryReconciler
from gitsail.kube.errors import NotFound
from gitsail.model import Artifact, Obj
from gitsail.policy import Policy
from gitsail.source.artifacts import ArtifactStore
from gitsail.source.credentials import RepoCredentials
from gitsail.source.errors import AuthError, FetchError, RevisionNotFound, SourceError

SHA1 = "1" * 40
SHA2 = "2" * 40
BASE = "http://gitsail-controller.gitsail.svc.cluster.local."
URL = "https://git.example.com/myorg/myapp-manifests"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeControlPlane:
    """Objects by (kind, namespace, name); records every patch."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.patches: list[tuple[str, str, dict[str, Any], str | None]] = []

    def add(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        found = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str = "gitsail",
    ) -> Obj:
        self.patches.append((kind, name, copy.deepcopy(patch), subresource))
        obj = self.objects.get((kind, namespace or "", name))
        if obj is None:
            raise NotFound(404, "NotFound", f"{kind} {name} not found", {})
        section = "status" if subresource == "status" else "metadata"
        target = obj.setdefault(section, {})
        for key, value in patch[section].items():
            if key == "resourceVersion":
                continue
            if value is None:
                target.pop(key, None)
            else:
                target[key] = copy.deepcopy(value)
        return copy.deepcopy(obj)

    def status_patches(self) -> list[dict[str, Any]]:
        return [p[2] for p in self.patches if p[3] == "status"]


class FakeGit:
    """Refs of one repository; a checkout directory per commit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.refs: dict[str, str] = {}
        self.trees: dict[str, dict[str, str]] = {}
        self.error: SourceError | None = None
        self.hang = False
        self.calls: list[tuple[str, str, RepoCredentials | None]] = []
        self.history: dict[str, set[str]] = {}  # branch -> commits in its history
        self.forgotten: list[str] = []  # URLs whose remembered refs were dropped

    def commit(self, sha: str, files: dict[str, str], *refs: str) -> None:
        self.trees[sha] = files
        for ref in refs:
            self.refs[ref] = sha
            self.history.setdefault(ref.removeprefix("refs/heads/"), set()).add(sha)

    async def branch_contains(
        self, repo_url: str, branch: str, sha: str, creds: RepoCredentials | None = None
    ) -> bool:
        return sha in self.history.get(branch, set())

    def forget(self, repo_url: str) -> None:
        self.forgotten.append(repo_url)

    async def resolve_ref(
        self, repo_url: str, revision: str, creds: RepoCredentials | None = None
    ) -> tuple[str, str]:
        tags = sorted(r for r in self.refs if r.startswith("refs/tags/"))
        return self.refs[tags[-1]], tags[-1]  # "the highest tag": enough for the fake

    async def fetch(
        self, repo_url: str, revision: str, path: str, creds: RepoCredentials | None = None
    ) -> Artifact:
        self.calls.append((repo_url, revision, creds))
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        sha = revision if revision in self.trees else self.refs.get(revision)
        if sha is None:
            raise RevisionNotFound(f"revision {revision!r} is not a branch, tag or commit")
        checkout = self.root / sha
        if not checkout.exists():
            for rel, text in self.trees[sha].items():
                (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
                (checkout / rel).write_text(text)
        return Artifact(repo_url, sha, revision, checkout, ".", "sha256:x")


def git_repository(name: str = "myapp", generation: int = 1, **spec: Any) -> Obj:
    base: dict[str, Any] = {"interval": "1m", "url": URL, "ref": {"branch": "main"}}
    base.update(spec)
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {
            "name": name,
            "namespace": "flux-system",
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {k: v for k, v in base.items() if v is not None},
    }


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.cluster = FakeControlPlane()
        self.git = FakeGit(tmp_path / "checkouts")
        self.store = ArtifactStore(tmp_path / "store", base_url=BASE)
        self.clock = FakeClock()
        self.reconciler = GitRepositoryReconciler(
            self.cluster, self.git, self.store, clock=self.clock
        )
        self.git.commit(SHA1, {"deploy/app.yaml": "kind: ConfigMap\n"}, "refs/heads/main")

    def add(self, obj: Obj) -> Obj:
        self.cluster.add(obj)
        return obj

    async def reconcile(self, name: str = "myapp") -> float | None:
        obj = self.cluster.objects[("GitRepository", "flux-system", name)]
        return await self.reconciler.reconcile(copy.deepcopy(obj), frozenset({"test"}))

    def status(self, name: str = "myapp") -> dict[str, Any]:
        obj = self.cluster.objects[("GitRepository", "flux-system", name)]
        return dict(obj.get("status") or {})

    def condition(self, ctype: str, name: str = "myapp") -> dict[str, Any] | None:
        for cond in self.status(name).get("conditions", []):
            if cond["type"] == ctype:
                return dict(cond)
        return None


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_a_new_repository_gets_an_artifact_and_is_ready_as_flux_reports_it(
    world: World,
) -> None:
    world.add(git_repository())
    assert await world.reconcile() == 60.0
    status = world.status()
    artifact = status["artifact"]
    assert artifact["revision"] == f"main@sha1:{SHA1}"
    assert artifact["digest"].startswith("sha256:")
    assert artifact["path"] == (
        f"gitrepository/flux-system/myapp/{artifact['digest'].removeprefix('sha256:')}.tar.gz"
    )
    assert artifact["url"] == f"{BASE}/{artifact['path']}"
    assert artifact["lastUpdateTime"] == "2026-01-01T00:00:00Z"
    assert artifact["size"] == (world.store.root / artifact["path"]).stat().st_size
    message = f"stored artifact for revision 'main@sha1:{SHA1}'"
    for ctype in ("Ready", "ArtifactInStorage"):
        assert world.condition(ctype) == {
            "type": ctype,
            "status": "True",
            "reason": "Succeeded",
            "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    assert status["observedGeneration"] == 1
    assert world.git.calls == [(URL, "refs/heads/main", None)]


async def test_one_status_patch_per_reconcile_and_none_when_nothing_changed(
    world: World,
) -> None:
    world.add(git_repository())
    await world.reconcile()
    assert len(world.cluster.status_patches()) == 1
    world.clock.advance(60)
    before = world.status()
    await world.reconcile()
    assert len(world.cluster.status_patches()) == 1
    assert world.status() == before


async def test_the_finalizer_is_added_once_and_finalize_removes_artifacts_and_it(
    world: World,
) -> None:
    world.add(git_repository())
    await world.reconcile()
    obj = world.cluster.objects[("GitRepository", "flux-system", "myapp")]
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    await world.reconcile()
    assert [p for p in world.cluster.patches if p[3] is None and p[0] == "GitRepository"] == [
        (
            "GitRepository",
            "myapp",
            {"metadata": {"finalizers": [FINALIZER], "resourceVersion": "1"}},
            None,
        )
    ]
    path = world.status()["artifact"]["path"]
    assert world.store.exists(path)
    deleting = copy.deepcopy(obj)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    assert await world.reconciler.reconcile(deleting, frozenset()) is None
    assert not world.store.exists(path)
    assert "finalizers" not in obj["metadata"]


async def test_a_new_commit_moves_the_artifact_revision_and_its_update_time(
    world: World,
) -> None:
    world.add(git_repository())
    await world.reconcile()
    first = world.status()["artifact"]
    world.git.commit(SHA2, {"deploy/app.yaml": "kind: Secret\n"}, "refs/heads/main")
    world.clock.advance(60)
    await world.reconcile()
    second = world.status()["artifact"]
    assert second["revision"] == f"main@sha1:{SHA2}"
    assert second["digest"] != first["digest"]
    assert second["lastUpdateTime"] == "2026-01-01T00:01:00Z"
    # the Ready condition kept its transition time: it was True and stays True
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert ready["message"] == f"stored artifact for revision 'main@sha1:{SHA2}'"


async def test_a_commit_that_only_touches_ignored_files_keeps_the_artifact_file(
    world: World,
) -> None:
    world.add(git_repository())
    await world.reconcile()
    first = world.status()["artifact"]
    world.git.commit(
        SHA2, {"deploy/app.yaml": "kind: ConfigMap\n", "logo.png": "png"}, "refs/heads/main"
    )
    world.clock.advance(60)
    await world.reconcile()
    second = world.status()["artifact"]
    assert second["revision"] == f"main@sha1:{SHA2}"
    assert (second["digest"], second["path"], second["lastUpdateTime"]) == (
        first["digest"],
        first["path"],
        first["lastUpdateTime"],
    )


@pytest.mark.parametrize(
    ("ref", "asked", "revision"),
    [
        ({"branch": "main"}, "refs/heads/main", f"main@sha1:{SHA1}"),
        ({"tag": "v1.0.0"}, "refs/tags/v1.0.0", f"v1.0.0@sha1:{SHA1}"),
        ({"semver": ">=1.0.0", "tag": "v0"}, "refs/tags/v1.0.0", f"v1.0.0@sha1:{SHA1}"),
        ({"name": "refs/pull/1/head"}, "refs/pull/1/head", f"refs/pull/1/head@sha1:{SHA1}"),
        ({"commit": SHA1}, SHA1, f"sha1:{SHA1}"),
        ({"commit": SHA1, "branch": "main"}, SHA1, f"main@sha1:{SHA1}"),
        (None, "refs/heads/master", f"master@sha1:{SHA1}"),
    ],
)
async def test_revisions_are_written_in_flux_v1_format(
    world: World, ref: dict[str, str] | None, asked: str, revision: str
) -> None:
    for name in ("refs/tags/v1.0.0", "refs/pull/1/head", "refs/heads/master"):
        world.git.refs[name] = SHA1
    world.add(git_repository(ref=ref))
    await world.reconcile()
    assert world.git.calls[-1][1] == asked
    assert world.status()["artifact"]["revision"] == revision


async def test_a_wrong_branch_is_not_ready_keeps_the_artifact_and_retries_with_backoff(
    world: World,
) -> None:
    world.add(git_repository())
    await world.reconcile()
    before = world.status()
    artifact = before["artifact"]
    changed = git_repository(generation=2, ref={"branch": "nope"})
    changed["status"] = before
    world.add(changed)
    delays = []
    for _ in range(8):
        world.clock.advance(1)
        delays.append(await world.reconcile())
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    status = world.status()
    assert status["artifact"] == artifact
    assert status["observedGeneration"] == 1  # transient: not observed yet
    ready = world.condition("Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "GitOperationFailed")
    assert "nope" in ready["message"]
    fetch_failed = world.condition("FetchFailed")
    assert fetch_failed is not None
    assert (fetch_failed["status"], fetch_failed["reason"]) == ("True", "GitOperationFailed")
    reconciling = world.condition("Reconciling")
    assert reconciling is not None
    assert reconciling["reason"] == "ProgressingWithRetry"
    in_storage = world.condition("ArtifactInStorage")
    assert in_storage is not None
    assert in_storage["status"] == "True"
    assert world.condition("Stalled") is None


async def test_recovery_clears_the_failure_conditions_and_the_backoff(world: World) -> None:
    world.add(git_repository(ref={"branch": "nope"}))
    assert await world.reconcile() == 1.0
    assert await world.reconcile() == 2.0
    world.git.refs["refs/heads/nope"] = SHA1
    assert await world.reconcile() == 60.0
    types = {c["type"] for c in world.status()["conditions"]}
    assert types == {"Ready", "ArtifactInStorage"}
    del world.git.refs["refs/heads/nope"]
    assert await world.reconcile() == 1.0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AuthError("authentication failed for https://git.example.com/x"), "AuthenticationFailed"),
        (FetchError("cannot reach git.example.com"), "GitOperationFailed"),
    ],
)
async def test_source_errors_become_flux_reasons(
    world: World, error: SourceError, reason: str
) -> None:
    world.add(git_repository())
    world.git.error = error
    await world.reconcile()
    ready = world.condition("Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", reason, str(error))
    assert "artifact" not in world.status()


async def test_an_unsupported_field_stalls_without_fetching(world: World) -> None:
    world.add(git_repository(verify={"mode": "HEAD", "secretRef": {"name": "keys"}}))
    assert await world.reconcile() is None
    assert world.git.calls == []
    stalled = world.condition("Stalled")
    assert stalled is not None
    assert (stalled["status"], stalled["reason"]) == ("True", "UnsupportedField")
    assert "spec.verify" in stalled["message"]
    ready = world.condition("Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "UnsupportedField")
    assert world.status()["observedGeneration"] == 1
    assert world.condition("Reconciling") is None


async def test_a_suspended_repository_is_left_alone(world: World) -> None:
    world.add(git_repository(suspend=True))
    assert await world.reconcile() is None
    assert world.git.calls == []
    assert world.cluster.patches == []


async def test_requested_at_is_mirrored_in_last_handled_reconcile_at(world: World) -> None:
    obj = world.add(git_repository())
    obj["metadata"]["annotations"] = {"reconcile.fluxcd.io/requestedAt": "2026-01-01T00:00:09Z"}
    await world.reconcile()
    assert world.status()["lastHandledReconcileAt"] == "2026-01-01T00:00:09Z"


async def test_a_new_reconcile_request_asks_the_git_server_not_the_remembered_refs(
    world: World,
) -> None:
    obj = world.add(git_repository())
    await world.reconcile()  # a poll: remembered refs may answer
    assert world.git.forgotten == []
    obj["metadata"]["annotations"] = {"reconcile.fluxcd.io/requestedAt": "2026-01-01T00:00:09Z"}
    await world.reconcile()
    assert world.git.forgotten == [URL]
    await world.reconcile()  # the same request, already handled: a poll again
    assert world.git.forgotten == [URL]


async def test_spec_timeout_bounds_the_fetch(world: World) -> None:
    world.add(git_repository(timeout="20ms"))
    world.git.hang = True
    assert await world.reconcile() == 1.0
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["reason"] == "GitOperationFailed"
    assert "timed out after 0.02s" in ready["message"]


def secret(name: str, **values: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "flux-system"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


async def test_basic_auth_and_bearer_token_secrets_become_credentials(world: World) -> None:
    world.cluster.add(secret("basic", username="git", password="pw"))
    world.cluster.add(secret("token", bearerToken="tok"))
    world.add(git_repository(secretRef={"name": "basic"}))
    world.add(git_repository(name="other", secretRef={"name": "token"}))
    await world.reconcile()
    await world.reconcile("other")
    basic, token = world.git.calls[0][2], world.git.calls[1][2]
    assert basic is not None
    assert (basic.username, basic.password, basic.bearer_token) == ("git", "pw", "")
    assert token is not None
    assert (token.username, token.bearer_token) == ("", "tok")


async def test_ssh_secrets_carry_identity_and_their_own_known_hosts(world: World) -> None:
    world.cluster.add(secret("ssh", identity="KEY", known_hosts="git.example.com ssh-ed25519 A"))
    world.add(git_repository(url="ssh://git@git.example.com/org/repo", secretRef={"name": "ssh"}))
    await world.reconcile()
    creds = world.git.calls[0][2]
    assert creds is not None
    assert (creds.ssh_private_key, creds.known_hosts) == ("KEY", "git.example.com ssh-ed25519 A")
    assert "KEY" not in repr(creds)


@pytest.mark.parametrize(
    ("values", "url", "says"),
    [
        (None, URL, "does not exist"),
        ({"identity": "KEY"}, "ssh://git@git.example.com/org/repo", "'known_hosts'"),
        ({"identity": "K", "known_hosts": "h", "password": "p"}, "ssh://h/r", "passphrase"),
        ({"username": "u", "password": "p", "ca.crt": "PEM"}, URL, "certificate authority"),
        ({"other": "x"}, URL, "neither"),
    ],
)
async def test_unusable_secrets_are_authentication_failures_that_retry(
    world: World, values: dict[str, str] | None, url: str, says: str
) -> None:
    if values is not None:
        world.cluster.add(secret("creds", **values))
    world.add(git_repository(url=url, secretRef={"name": "creds"}))
    assert await world.reconcile() == 1.0
    assert world.git.calls == []
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["reason"] == "AuthenticationFailed"
    assert says in ready["message"]


async def test_include_copies_another_repositorys_artifact_into_a_sub_path(
    world: World,
) -> None:
    world.add(git_repository(name="other"))
    await world.reconcile("other")
    world.add(
        git_repository(
            include=[{"repository": {"name": "other"}, "fromPath": "deploy", "toPath": "vendor"}]
        )
    )
    await world.reconcile()
    path = world.store.root / world.status()["artifact"]["path"]
    with tarfile.open(path, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["deploy/app.yaml", "vendor/app.yaml"]
    assert world.status()["observedInclude"] == [
        {"repository": {"name": "other"}, "fromPath": "deploy", "toPath": "vendor"}
    ]


async def test_an_include_without_an_artifact_is_unavailable_and_retried(world: World) -> None:
    world.add(git_repository(include=[{"repository": {"name": "missing"}}]))
    assert await world.reconcile() == 1.0
    unavailable = world.condition("IncludeUnavailable")
    assert unavailable is not None
    assert unavailable["status"] == "True"
    assert "missing" in unavailable["message"]


async def test_an_artifact_over_the_limit_stalls_until_the_source_changes(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    world.reconciler.store = ArtifactStore(
        tmp_path / "small", base_url=BASE, policy=Policy(artifact_bytes=4)
    )
    world.add(git_repository())
    assert await world.reconcile() == 60.0
    stalled = world.condition("Stalled")
    assert stalled is not None
    assert stalled["reason"] == "StorageOperationFailed"
    assert "GITSAIL_ARTIFACT_BYTES" in stalled["message"]


async def test_a_missing_artifact_file_is_rebuilt(world: World) -> None:
    world.add(git_repository())
    await world.reconcile()
    path = world.store.root / world.status()["artifact"]["path"]
    path.unlink()
    await world.reconcile()
    assert path.is_file()


async def test_a_failure_after_the_artifact_vanished_drops_it_from_status(world: World) -> None:
    world.add(git_repository())
    await world.reconcile()
    (world.store.root / world.status()["artifact"]["path"]).unlink()
    world.git.error = FetchError("cannot reach git.example.com")
    await world.reconcile()
    assert "artifact" not in world.status()
    assert world.condition("ArtifactInStorage") is None
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["status"] == "False"


async def test_a_commit_outside_its_branch_is_a_git_operation_failure(world: World) -> None:
    world.git.commit(SHA2, {"a.yaml": "a"}, "refs/heads/other")
    world.add(git_repository(ref={"branch": "main", "commit": SHA2}))
    assert await world.reconcile() == 1.0
    ready = world.condition("Ready")
    assert ready is not None
    assert ready["reason"] == "GitOperationFailed"
    assert "is not in branch main" in ready["message"]
    world.add(git_repository(ref={"branch": "other", "commit": SHA2}))
    assert await world.reconcile() == 60.0
