"""``WrittenVersions``: when a cached copy holds this client's last write, and when a
``Kube`` records one (against an in-memory apiserver on httpx.MockTransport)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gitsail.kube.errors import Conflict
from gitsail.kube.written import WrittenVersions
from tests.unit.kube.test_client import make_kube, ok, status

API = "apps/v1"


def deploy(version: str, name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": version},
    }


def test_a_copy_is_current_only_at_the_version_of_the_last_write() -> None:
    written = WrittenVersions()
    written.track(API, "Deployment")
    assert not written.current(API, "Deployment", deploy("5"))  # never written: read it
    written.record("apps", "Deployment", "shop", "web", deploy("7"))
    assert written.current(API, "Deployment", deploy("7"))
    assert not written.current(API, "Deployment", deploy("5"))  # the watch lags our write
    assert not written.current(API, "Deployment", deploy("9"))  # someone wrote after us
    assert not written.current(API, "Deployment", deploy("7", name="other"))


def test_a_write_in_flight_or_of_unknown_outcome_makes_no_copy_current() -> None:
    written = WrittenVersions()
    written.track(API, "Deployment")
    written.record("apps", "Deployment", "shop", "web", deploy("7"))
    written.begin("apps", "Deployment", "shop", "web")
    assert not written.current(API, "Deployment", deploy("7"))
    written.record("apps", "Deployment", "shop", "web", None)  # it raised
    assert not written.current(API, "Deployment", deploy("7"))
    assert not written.current(API, "Deployment", deploy(""))  # no version is no match


def test_clear_and_forget_drop_what_was_written() -> None:
    written = WrittenVersions()
    written.track(API, "Deployment")
    written.record("apps", "Deployment", "shop", "web", deploy("7"))
    written.clear()
    assert not written.current(API, "Deployment", deploy("7"))
    written.record("apps", "Deployment", "shop", "web", deploy("8"))
    written.forget(API, "Deployment", "shop", "web")
    assert len(written) == 0


def test_kinds_not_tracked_are_not_recorded() -> None:
    written = WrittenVersions()
    written.record("apps", "Deployment", "shop", "web", deploy("7"))
    assert len(written) == 0
    assert not written.current(API, "Deployment", deploy("7"))
    written.track("argoproj.io/v1alpha1", "Deployment")  # same kind, another group
    written.record("apps", "Deployment", "shop", "web", deploy("7"))
    assert len(written) == 0


async def test_kube_records_the_version_each_write_returned() -> None:
    answers = iter([deploy("11"), deploy("12"), deploy("13"), deploy("14")])
    kube, _server = make_kube(lambda _req: httpx.Response(200, json=next(answers)))
    kube.written.track(API, "Deployment")
    async with kube:
        await kube.apply(deploy(""), dry_run=True)  # a dry run writes nothing
        assert not kube.written.current(API, "Deployment", deploy("11"))
        await kube.apply(deploy(""))
        assert kube.written.current(API, "Deployment", deploy("12"))
        await kube.merge_patch(API, "Deployment", "web", {"status": {}}, "shop", "status")
        assert kube.written.current(API, "Deployment", deploy("13"))
        view = kube.impersonating("someone")  # views share the record
        await view.json_patch(API, "Deployment", "web", [], "shop")
        assert kube.written.current(API, "Deployment", deploy("14"))


async def test_kube_marks_a_failed_write_and_a_delete_as_unknown() -> None:
    answers = iter([deploy("21"), status(409, "Conflict", "changed"), deploy("22")])
    kube, _server = make_kube(lambda _req: next_answer(answers))
    kube.written.track(API, "Deployment")
    async with kube:
        await kube.apply(deploy(""))
        with pytest.raises(Conflict):
            await kube.merge_patch(API, "Deployment", "web", {}, "shop")
        assert not kube.written.current(API, "Deployment", deploy("21"))
        await kube.apply(deploy(""))
        assert kube.written.current(API, "Deployment", deploy("22"))
    kube, _server = make_kube(ok({"kind": "Status"}))
    kube.written.track(API, "Deployment")
    kube.written.record("apps", "Deployment", "shop", "web", deploy("30"))
    async with kube:
        await kube.delete(API, "Deployment", "web", "shop")
    assert not kube.written.current(API, "Deployment", deploy("30"))


async def test_no_copy_is_current_while_the_write_is_in_flight() -> None:
    release, sent = asyncio.Event(), asyncio.Event()
    seen: list[bool] = []
    kube, _server = make_kube(lambda _req: httpx.Response(200, json=deploy("41")))
    kube.written.track(API, "Deployment")
    kube.written.record("apps", "Deployment", "shop", "web", deploy("40"))

    async def slow(request: httpx.Request) -> httpx.Response:
        seen.append(kube.written.current(API, "Deployment", deploy("40")))
        sent.set()
        await release.wait()
        return httpx.Response(200, json=deploy("41"))

    async with kube:
        await kube.discover()  # from the recorded discovery; then the write waits for us
        kube._transport = httpx.MockTransport(slow)
        write = asyncio.create_task(kube.merge_patch(API, "Deployment", "web", {}, "shop"))
        await asyncio.wait_for(sent.wait(), 10)
        assert seen == [False]
        release.set()
        await write
    assert kube.written.current(API, "Deployment", deploy("41"))


def next_answer(answers: Any) -> httpx.Response:
    answer = next(answers)
    return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)
