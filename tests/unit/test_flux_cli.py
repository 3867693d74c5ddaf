"""The pure parts of Flux's verbs: table rows from status, when a reconcile counts as
handled, and tables that stay whole when piped."""

from __future__ import annotations

import pytest

from gitsail.cli.flux import GIT_REPOSITORY, KUSTOMIZATION, _handled, _print_rows, _row
from gitsail.model import Obj


def obj(status: dict[str, object], suspend: bool | None = None) -> Obj:
    spec = {} if suspend is None else {"suspend": suspend}
    return {"metadata": {"name": "web", "namespace": "flux-system"}, "spec": spec, "status": status}


def ready(status: str, message: str = "m") -> dict[str, str]:
    return {"type": "Ready", "status": status, "message": message}


def test_rows_read_the_revision_of_each_kind_and_ready_from_conditions() -> None:
    repo = obj({"artifact": {"revision": "main@sha1:abc"}, "conditions": [ready("True", "ok")]})
    assert _row(GIT_REPOSITORY, repo) == {
        "namespace": "flux-system",
        "name": "web",
        "revision": "main@sha1:abc",
        "suspended": "False",
        "ready": "True",
        "message": "ok",
    }
    ks = obj({"lastAppliedRevision": "main@sha1:def"}, suspend=True)
    row = _row(KUSTOMIZATION, ks)
    assert (row["revision"], row["suspended"], row["ready"], row["message"]) == (
        "main@sha1:def",
        "True",
        "Unknown",
        "",
    )


def test_a_request_is_handled_once_its_stamp_is_reported_and_ready_is_decided() -> None:
    stamp = "2026-12-02T04:30:00.5Z"
    assert _handled(obj({"conditions": [ready("True")]}), stamp) is None
    old = obj({"lastHandledReconcileAt": "earlier", "conditions": [ready("True")]})
    assert _handled(old, stamp) is None
    deciding = obj({"lastHandledReconcileAt": stamp, "conditions": [ready("Unknown")]})
    assert _handled(deciding, stamp) is None
    assert (
        _handled(obj({"lastHandledReconcileAt": stamp, "conditions": [ready("False")]}), stamp)
        == "False"
    )
    assert (
        _handled(obj({"lastHandledReconcileAt": stamp, "conditions": [ready("True")]}), stamp)
        == "True"
    )


def test_a_piped_table_is_never_cut_and_markup_is_shown_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = "[bold]not markup[/bold] " + "x" * 300
    _print_rows([{"name": "web", "message": message}], ("name", "message"))
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "MESSAGE"]
    assert line.split(maxsplit=1) == ["web", message]
