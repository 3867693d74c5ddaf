from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from gitsail.controller.webhook import (
    GENERATE_PATHS_ANNOTATION,
    PushEvent,
    ReplayGuard,
    WebhookError,
    WebhookSecrets,
    delivery_keys,
    manifest_paths,
    parse_webhook,
    push_touches_app,
    repo_matches,
    webhook_provider,
)

GITHUB_SECRET = "gh-shared-s3cret"
GITLAB_SECRET = "gl-shared-t0ken"
GENERIC_SECRET = "generic-s3cret"
SECRETS = WebhookSecrets(github=GITHUB_SECRET, gitlab=GITLAB_SECRET, generic=GENERIC_SECRET)
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": SHA,
        "repository": {
            "html_url": "https://github.com/acme/deploy",
            "clone_url": "https://github.com/acme/deploy.git",
            "ssh_url": "git@github.com:acme/deploy.git",
            "git_url": "git://github.com/acme/deploy.git",
        },
        "commits": [
            {"added": ["apps/web/new.yaml"], "modified": ["apps/web/deploy.yaml"], "removed": []},
            {"added": [], "modified": ["apps/api/values.yaml"], "removed": ["old.yaml"]},
        ],
    }
    payload.update(overrides)
    return payload


def github_request(
    payload: dict[str, Any], *, event: str = "push", secret: str = GITHUB_SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": sign(secret, body),
    }
    return headers, body


def gitlab_push(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "after": SHA,
        "checkout_sha": SHA,
        "project": {
            "web_url": "https://gitlab.example.com/group/sub/deploy",
            "git_http_url": "https://gitlab.example.com/group/sub/deploy.git",
            "git_ssh_url": "git@gitlab.example.com:group/sub/deploy.git",
        },
        "repository": {"homepage": "https://gitlab.example.com/group/sub/deploy"},
        "commits": [{"added": ["a.yaml"], "modified": ["b.yaml"], "removed": []}],
        "total_commits_count": 1,
    }
    payload.update(overrides)
    return payload


def gitlab_request(
    payload: dict[str, Any], *, event: str = "Push Hook", token: str = GITLAB_SECRET
) -> tuple[dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event}
    if token:
        headers["X-Gitlab-Token"] = token
    return headers, json.dumps(payload).encode()


def generic_request(
    payload: dict[str, Any], *, secret: str = GENERIC_SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {"X-Gitsail-Signature": sign(secret, body)}, body


def refused(headers: dict[str, str], body: bytes, secrets: WebhookSecrets = SECRETS) -> int:
    with pytest.raises(WebhookError) as info:
        parse_webhook(headers, body, secrets)
    message = str(info.value)
    for secret in (GITHUB_SECRET, GITLAB_SECRET, GENERIC_SECRET):
        assert secret not in message
    for value in headers.values():
        if value.startswith("sha256="):
            assert value.removeprefix("sha256=") not in message
    return info.value.status


# -- secrets ------------------------------------------------------------------------------


def test_secrets_are_read_from_argocd_secret_data_and_string_data() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "argocd-secret"},
        "data": {
            "webhook.github.secret": base64.b64encode(b"from-data").decode(),
            "webhook.gitlab.secret": base64.b64encode(b"gl\n").decode(),
            "server.secretkey": base64.b64encode(b"unrelated").decode(),
        },
        "stringData": {"webhook.github.secret": "from-string-data"},
    }
    secrets = WebhookSecrets.from_argocd_secret(secret)
    assert secrets == WebhookSecrets(github="from-string-data", gitlab="gl", generic="")


def test_secrets_from_a_missing_secret_or_bad_base64_are_unset() -> None:
    assert WebhookSecrets.from_argocd_secret(None) == WebhookSecrets()
    bad = {"data": {"webhook.github.secret": "not base64!"}}
    assert WebhookSecrets.from_argocd_secret(bad).github == ""


def test_secrets_repr_never_shows_values() -> None:
    text = repr(SECRETS) + str(SECRETS)
    assert GITHUB_SECRET not in text
    assert GITLAB_SECRET not in text
    assert GENERIC_SECRET not in text
    assert "github=set" in text
    assert "unset" in repr(WebhookSecrets(github="x"))


# -- GitHub -------------------------------------------------------------------------------


def test_github_push_is_parsed() -> None:
    event = parse_webhook(*github_request(github_push()), SECRETS)
    assert event == PushEvent(
        provider="github",
        repo_urls=(
            "https://github.com/acme/deploy",
            "https://github.com/acme/deploy.git",
            "git@github.com:acme/deploy.git",
            "git://github.com/acme/deploy.git",
        ),
        ref="refs/heads/main",
        revision="main",
        after=SHA,
        changed_files=(
            "apps/api/values.yaml",
            "apps/web/deploy.yaml",
            "apps/web/new.yaml",
            "old.yaml",
        ),
    )


def test_github_headers_are_case_insensitive() -> None:
    headers, body = github_request(github_push())
    lowered = {k.lower(): v for k, v in headers.items()}
    assert parse_webhook(lowered, body, SECRETS) is not None


def test_github_tag_push_gives_tag_revision_and_unknown_files() -> None:
    event = parse_webhook(*github_request(github_push(ref="refs/tags/v1.2", commits=[])), SECRETS)
    assert event is not None
    assert (event.ref, event.revision) == ("refs/tags/v1.2", "v1.2")
    assert event.changed_files is None


def test_github_without_commits_has_unknown_changed_files() -> None:
    payload = github_push()
    del payload["commits"]
    event = parse_webhook(*github_request(payload), SECRETS)
    assert event is not None
    assert event.changed_files is None


def test_github_truncated_commit_list_has_unknown_changed_files() -> None:
    many = [{"added": [f"f{i}.yaml"], "modified": [], "removed": []} for i in range(21)]
    event = parse_webhook(*github_request(github_push(commits=many)), SECRETS)
    assert event is not None
    assert event.changed_files is None
    sized = github_push(size=5)
    event = parse_webhook(*github_request(sized), SECRETS)
    assert event is not None
    assert event.changed_files is None


def test_github_deleted_branch_has_empty_after() -> None:
    event = parse_webhook(*github_request(github_push(after="0" * 40, commits=[])), SECRETS)
    assert event is not None
    assert event.after == ""


def test_github_ping_and_other_events_are_ignored() -> None:
    assert parse_webhook(*github_request({"zen": "hi"}, event="ping"), SECRETS) is None
    assert parse_webhook(*github_request({"action": "x"}, event="issues"), SECRETS) is None


def test_github_bad_or_missing_signature_is_refused() -> None:
    headers, body = github_request(github_push(), secret="wrong-secret")
    assert refused(headers, body) == 401
    headers, body = github_request(github_push())
    del headers["X-Hub-Signature-256"]
    assert refused(headers, body) == 401
    headers, body = github_request(github_push())
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].replace("sha256", "sha1")
    assert refused(headers, body) == 401
    headers, body = github_request(github_push())
    assert refused(headers, body + b" ") == 401  # signature covers the raw body


def test_github_signature_is_checked_before_the_event_type() -> None:
    headers, body = github_request({"zen": "hi"}, event="ping", secret="wrong-secret")
    assert refused(headers, body) == 401


def test_github_without_configured_secret_is_refused() -> None:
    headers, body = github_request(github_push(), secret="")
    assert refused(headers, body, WebhookSecrets(gitlab=GITLAB_SECRET)) == 401


def test_github_form_encoded_content_type_is_refused() -> None:
    headers, body = github_request(github_push())
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert refused(headers, body) == 400


def test_github_malformed_json_is_refused() -> None:
    body = b"{not json"
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": sign(GITHUB_SECRET, body),
    }
    assert refused(headers, body) == 400
    body = b"[1, 2]"
    headers["X-Hub-Signature-256"] = sign(GITHUB_SECRET, body)
    assert refused(headers, body) == 400


def test_github_push_without_ref_is_refused() -> None:
    payload = github_push()
    del payload["ref"]
    assert refused(*github_request(payload)) == 400


# -- GitLab -------------------------------------------------------------------------------


def test_gitlab_push_is_parsed() -> None:
    event = parse_webhook(*gitlab_request(gitlab_push()), SECRETS)
    assert event == PushEvent(
        provider="gitlab",
        repo_urls=(
            "https://gitlab.example.com/group/sub/deploy",
            "https://gitlab.example.com/group/sub/deploy.git",
            "git@gitlab.example.com:group/sub/deploy.git",
        ),
        ref="refs/heads/main",
        revision="main",
        after=SHA,
        changed_files=("a.yaml", "b.yaml"),
    )


def test_gitlab_tag_push_uses_checkout_sha() -> None:
    payload = gitlab_push(ref="refs/tags/v2", after="a" * 40, commits=[], total_commits_count=0)
    event = parse_webhook(*gitlab_request(payload, event="Tag Push Hook"), SECRETS)
    assert event is not None
    assert (event.revision, event.after, event.changed_files) == ("v2", SHA, None)


def test_gitlab_truncated_commits_have_unknown_changed_files() -> None:
    event = parse_webhook(*gitlab_request(gitlab_push(total_commits_count=40)), SECRETS)
    assert event is not None
    assert event.changed_files is None


def test_gitlab_wrong_missing_or_unconfigured_token_is_refused() -> None:
    assert refused(*gitlab_request(gitlab_push(), token="nope")) == 401
    assert refused(*gitlab_request(gitlab_push(), token="")) == 401
    headers, body = gitlab_request(gitlab_push())
    assert refused(headers, body, WebhookSecrets(github=GITHUB_SECRET)) == 401


def test_gitlab_other_events_are_ignored() -> None:
    assert parse_webhook(*gitlab_request({}, event="Merge Request Hook"), SECRETS) is None


# -- generic ------------------------------------------------------------------------------


def test_generic_push_is_parsed() -> None:
    payload = {
        "repository": "https://git.example.com/org/repo.git",
        "ref": "refs/heads/release",
        "after": SHA,
        "changedFiles": ["apps/b.yaml", "/apps/a.yaml", "apps/b.yaml"],
    }
    event = parse_webhook(*generic_request(payload), SECRETS)
    assert event == PushEvent(
        provider="generic",
        repo_urls=("https://git.example.com/org/repo.git",),
        ref="refs/heads/release",
        revision="release",
        after=SHA,
        changed_files=("apps/a.yaml", "apps/b.yaml"),
    )


def test_generic_without_changed_files_has_unknown_changed_files() -> None:
    payload = {"repository": "https://git.example.com/org/repo", "ref": "refs/tags/v3"}
    event = parse_webhook(*generic_request(payload), SECRETS)
    assert event is not None
    assert (event.revision, event.after, event.changed_files) == ("v3", "", None)


def test_generic_bad_signature_or_unconfigured_secret_is_refused() -> None:
    payload = {"repository": "https://git.example.com/org/repo", "ref": "refs/heads/main"}
    assert refused(*generic_request(payload, secret="wrong")) == 401
    headers, body = generic_request(payload)
    assert refused(headers, body, WebhookSecrets(github=GITHUB_SECRET)) == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"ref": "refs/heads/main"},
        {"repository": "https://h/o/r", "ref": "main"},
        {"repository": "https://h/o/r", "ref": "refs/heads/main", "changedFiles": "a.yaml"},
        {"repository": "https://h/o/r", "ref": "refs/heads/main", "after": 5},
    ],
)
def test_generic_malformed_payload_is_refused(payload: dict[str, Any]) -> None:
    assert refused(*generic_request(payload)) == 400


# -- common -------------------------------------------------------------------------------


def test_unknown_provider_is_refused() -> None:
    assert refused({"X-Event-Key": "repo:push"}, b"{}") == 400


def test_body_over_the_limit_is_refused_before_verification() -> None:
    headers, body = github_request(github_push())
    with pytest.raises(WebhookError) as info:
        parse_webhook(headers, body, SECRETS, max_bytes=len(body) - 1)
    assert info.value.status == 413
    assert parse_webhook(headers, body, SECRETS, max_bytes=len(body)) is not None


def test_webhook_provider_reads_headers_only() -> None:
    assert webhook_provider({"x-github-event": "push"}) == "github"
    assert webhook_provider({"X-Gitlab-Event": "Push Hook"}) == "gitlab"
    assert webhook_provider({"X-Gitsail-Signature": "sha256=00"}) == "generic"
    assert webhook_provider({"X-Event-Key": "repo:push"}) == "unknown"


# -- matching -----------------------------------------------------------------------------


def _event(*urls: str) -> PushEvent:
    return PushEvent("generic", urls, "refs/heads/main", "main", "", None)


@pytest.mark.parametrize(
    "app_url",
    [
        "https://github.com/acme/deploy",
        "https://github.com/acme/deploy.git",
        "https://github.com/acme/deploy/",
        "git@github.com:acme/deploy.git",
        "ssh://git@github.com/acme/deploy.git",
        "https://user:pass@GitHub.com/Acme/Deploy.git",
    ],
)
def test_repo_matches_every_form_of_the_same_repository(app_url: str) -> None:
    assert repo_matches(app_url, _event("https://github.com/acme/deploy"))
    assert repo_matches(app_url, _event("git@github.com:acme/deploy.git"))


@pytest.mark.parametrize(
    "app_url",
    [
        "https://github.com/acme/deploy-other",
        "https://gitlab.com/acme/deploy",
        "https://github.com/acme",
        "",
    ],
)
def test_repo_matches_refuses_other_repositories(app_url: str) -> None:
    assert not repo_matches(app_url, _event("https://github.com/acme/deploy.git"))


def test_repo_matches_any_url_of_a_github_event() -> None:
    event = parse_webhook(*github_request(github_push()), SECRETS)
    assert event is not None
    assert repo_matches("ssh://git@github.com/acme/deploy", event)


# -- replays ------------------------------------------------------------------------------


def test_delivery_keys_name_the_delivery_id_and_the_signed_body() -> None:
    headers, body = github_request(github_push())
    headers["X-GitHub-Delivery"] = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    event = parse_webhook(headers, body, SECRETS)
    assert event is not None
    keys = delivery_keys("github", headers, body, event)
    assert len(keys) == 2
    # A replay with a fresh delivery id still carries the same signed bytes.
    headers["X-GitHub-Delivery"] = "a-fresh-id"
    assert set(keys) & set(delivery_keys("github", headers, body, event))
    # Header values are stored as digests, not as sent.
    assert all("72d3162e" not in key for key in keys)


def test_gitlab_delivery_is_named_by_its_event_uuid_only() -> None:
    headers, body = gitlab_request(gitlab_push())
    event = parse_webhook(headers, body, SECRETS)
    assert event is not None
    assert delivery_keys("gitlab", headers, body, event) == ()
    headers["X-Gitlab-Event-UUID"] = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    assert len(delivery_keys("gitlab", headers, body, event)) == 1


def test_a_push_without_a_commit_is_not_named_by_its_body() -> None:
    headers, body = generic_request(
        {"repository": "https://git.example.com/r", "ref": "refs/heads/main"}
    )
    event = parse_webhook(headers, body, SECRETS)
    assert event is not None
    assert delivery_keys("generic", headers, body, event) == ()


def test_replay_guard_refuses_a_key_it_has_seen() -> None:
    guard = ReplayGuard(10)
    assert guard.claim(["a", "b"])
    assert not guard.claim(["b", "c"])
    assert not guard.claim(["a"])
    assert guard.claim(["c"])


def test_replay_guard_forgets_released_keys_so_a_retry_passes() -> None:
    guard = ReplayGuard(10)
    assert guard.claim(["a"])
    guard.release(["a"])
    assert guard.claim(["a"])


def test_replay_guard_keeps_at_most_its_window_oldest_forgotten_first() -> None:
    guard = ReplayGuard(3)
    for key in "abcd":
        assert guard.claim([key])
    assert len(guard) == 3
    assert guard.claim(["a"])  # forgotten
    assert not guard.claim(["d"])


def test_replay_guard_with_a_window_of_zero_remembers_nothing() -> None:
    guard = ReplayGuard(0)
    assert guard.claim(["a"])
    assert guard.claim(["a"])
    assert len(guard) == 0


# -- path filtering -----------------------------------------------------------------------


def _app(annotation: str | None, path: str = "apps/web") -> dict[str, Any]:
    annotations = {} if annotation is None else {GENERATE_PATHS_ANNOTATION: annotation}
    return {"metadata": {"annotations": annotations}, "spec": {"source": {"path": path}}}


def test_an_app_without_the_annotation_is_refreshed_by_any_push_of_its_repo() -> None:
    assert push_touches_app(_app(None), ("docs/readme.md",))


def test_a_push_with_unknown_files_refreshes_even_an_annotated_app() -> None:
    assert push_touches_app(_app("."), None)


def test_a_new_file_in_the_app_directory_refreshes_it() -> None:
    assert push_touches_app(_app("."), ("apps/web/new-service.yaml",))
    assert push_touches_app(_app("."), ("apps/web/sub/dir/new.yaml",))


def test_removed_and_renamed_files_count_like_added_ones() -> None:
    # A rename out of the directory is listed as a removal there and an addition elsewhere.
    assert push_touches_app(_app("."), ("apps/web/old.yaml", "attic/old.yaml"))


def test_files_outside_the_generate_paths_do_not_refresh() -> None:
    assert not push_touches_app(_app("."), ("apps/webshop/x.yaml", "apps/other/x.yaml"))


def test_generate_paths_relative_absolute_and_several() -> None:
    app = _app(".;../shared;/charts/common")
    assert push_touches_app(app, ("apps/shared/cm.yaml",))
    assert push_touches_app(app, ("charts/common/values.yaml",))
    assert push_touches_app(app, ("/charts/common/values.yaml",))
    assert not push_touches_app(app, ("charts/other/values.yaml",))


def test_generate_paths_globs_match_like_go_path_match() -> None:
    app = _app("/shared/*-secret.yaml")
    assert push_touches_app(app, ("shared/db-secret.yaml",))
    assert not push_touches_app(app, ("shared/sub/db-secret.yaml",))
    assert not push_touches_app(app, ("shared/db.yaml",))
    assert push_touches_app(_app("/env/[a-c]?/values.yaml"), ("env/b1/values.yaml",))
    assert not push_touches_app(_app("/env/[^a-c]?/values.yaml"), ("env/b1/values.yaml",))


@pytest.mark.parametrize("value", ["", " ; ", "../../..", "/env/[a-c/x", "/x/[\\]]"])
def test_a_generate_paths_value_that_names_nothing_readable_does_not_filter(value: str) -> None:
    assert push_touches_app(_app(value), ("unrelated/file.yaml",))


def test_root_app_path_and_root_generate_path() -> None:
    assert manifest_paths(".", "") == (".",)
    assert manifest_paths("/", "apps/web") == (".",)
    assert manifest_paths("./base;../x", "apps/web/") == ("apps/web/base", "apps/x")
    assert push_touches_app(_app("/"), ("anything.yaml",))
