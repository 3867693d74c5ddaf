"""Pure pieces of the GitRepository reconciler: revision formats, status and its patch."""

from __future__ import annotations

import pytest

from gitsail.kinds.flux_gitrepository import GitRepository, parse_git_repository
from gitsail.kinds.flux_gitrepository_reconciler import (
    Outcome,
    artifact_revision,
    compute_status,
    fetch_revision,
)
from gitsail.kinds.flux_source_reconciler import status_patch
from gitsail.kinds.records import RefKind, RevisionRef
from gitsail.kinds.status import Stalled, Transient
from gitsail.source.artifacts import StoredArtifact

SHA1 = "a" * 40
SHA256 = "b" * 64


@pytest.mark.parametrize(
    ("ref", "resolved", "sha", "expected"),
    [
        (RevisionRef(RefKind.BRANCH, "main"), "refs/heads/main", SHA1, f"main@sha1:{SHA1}"),
        (RevisionRef(RefKind.TAG, "v1.0.0"), "refs/tags/v1.0.0", SHA1, f"v1.0.0@sha1:{SHA1}"),
        (RevisionRef(RefKind.SEMVER, "1.x"), "refs/tags/v1.2.0", SHA1, f"v1.2.0@sha1:{SHA1}"),
        (RevisionRef(RefKind.NAME, "refs/heads/main"), "", SHA1, f"refs/heads/main@sha1:{SHA1}"),
        (RevisionRef(RefKind.COMMIT, SHA1), "", SHA1, f"sha1:{SHA1}"),
        (RevisionRef(RefKind.COMMIT, SHA1, branch="dev"), "", SHA1, f"dev@sha1:{SHA1}"),
        (RevisionRef(RefKind.BRANCH, "main"), "refs/heads/main", SHA256, f"main@sha256:{SHA256}"),
    ],
)
def test_artifact_revision_is_flux_v1s(
    ref: RevisionRef, resolved: str, sha: str, expected: str
) -> None:
    assert artifact_revision(ref, resolved, sha) == expected


def test_branches_and_tags_are_fetched_by_full_ref_name() -> None:
    assert fetch_revision(RevisionRef(RefKind.BRANCH, "main")) == "refs/heads/main"
    assert fetch_revision(RevisionRef(RefKind.TAG, "v1")) == "refs/tags/v1"
    assert fetch_revision(RevisionRef(RefKind.COMMIT, SHA1, branch="main")) == SHA1


def repo(generation: int = 1, **spec: object) -> GitRepository:
    return parse_git_repository(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "app", "namespace": "ns", "generation": generation},
            "spec": {"interval": "1m", "url": "https://git.example.com/r", **spec},
        }
    )


STORED = StoredArtifact("gitrepository/ns/app/x.tar.gz", "http://c/x", "main@sha1:a", "sha256:d", 9)


def test_the_same_outcome_twice_gives_the_same_status_and_no_patch() -> None:
    parsed = repo(ignore="*.md\n")
    first = compute_status({}, parsed, Outcome(artifact=STORED), now="T1")
    second = compute_status(first, parsed, Outcome(artifact=STORED), now="T2")
    assert first == second
    assert status_patch(first, second) is None
    assert first["observedIgnore"] == "*.md\n"
    assert first["artifact"]["lastUpdateTime"] == "T1"


def test_a_transient_failure_keeps_observed_generation_a_stall_sets_it() -> None:
    ok = compute_status({}, repo(1), Outcome(artifact=STORED), now="T1")
    transient = Outcome(
        error=Transient("GitOperationFailed", "down"), failed_condition="FetchFailed"
    )
    failed = compute_status(ok, repo(2), transient, now="T2")
    assert failed["observedGeneration"] == 1
    assert failed["artifact"] == ok["artifact"]
    stalled = Outcome(error=Stalled("GitOperationFailed", "bad"), failed_condition="FetchFailed")
    assert compute_status(ok, repo(2), stalled, now="T2")["observedGeneration"] == 2


def test_status_patch_nulls_removed_keys_and_sends_only_changes() -> None:
    current = {"observedIgnore": "x", "observedGeneration": 1, "conditions": []}
    new = {"observedGeneration": 2, "conditions": []}
    assert status_patch(current, new) == {
        "status": {"observedGeneration": 2, "observedIgnore": None}
    }
