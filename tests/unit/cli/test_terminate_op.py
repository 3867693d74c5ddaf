"""Terminating an operation through the Application (``request_termination``), against the
in-memory Application API of the operation tests."""

from __future__ import annotations

import pytest

from gitsail.cli.operation import ApplicationGone, NoOperation, request_termination
from tests.unit.cli.test_operation import FakeApi, application

OPERATION = {"sync": {"revision": "main"}, "initiatedBy": {"username": "ada"}}


def running() -> FakeApi:
    app = application()
    app["operation"] = OPERATION
    app["status"] = {"operationState": {"phase": "Running", "operation": OPERATION}}
    return FakeApi(app)


async def test_a_running_operation_is_marked_terminating() -> None:
    api = running()
    written, what = await request_termination(api, "argocd", "shop")
    assert what == "terminating"
    assert written["status"]["operationState"] == {"phase": "Terminating", "operation": OPERATION}
    assert written["operation"] == OPERATION  # the controller clears it when it stops


async def test_asking_twice_writes_once() -> None:
    api = running()
    await request_termination(api, "argocd", "shop")
    version = api.version
    _, what = await request_termination(api, "argocd", "shop")
    assert what == "already"
    assert api.version == version


async def test_an_operation_not_started_is_withdrawn() -> None:
    app = application()
    app["operation"] = OPERATION
    app["status"] = {"operationState": {"phase": "Succeeded"}}  # the previous one
    written, what = await request_termination(FakeApi(app), "argocd", "shop")
    assert what == "withdrawn"
    assert "operation" not in written


async def test_one_started_between_read_and_write_is_terminated_not_withdrawn() -> None:
    app = application()
    app["operation"] = OPERATION
    api = FakeApi(app)
    # The controller picks it up just before our write: the withdrawal conflicts.
    api.before_patch.append({"status": {"operationState": {"phase": "Running"}}})
    written, what = await request_termination(api, "argocd", "shop")
    assert what == "terminating"
    assert written["operation"] == OPERATION
    assert written["status"]["operationState"]["phase"] == "Terminating"


async def test_nothing_to_terminate() -> None:
    with pytest.raises(NoOperation, match="No operation is in progress"):
        await request_termination(FakeApi(application()), "argocd", "shop")
    with pytest.raises(ApplicationGone):
        await request_termination(FakeApi(None), "argocd", "shop")
