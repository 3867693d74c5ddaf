"""``WatchCache``: an informer that keeps every object of one kind in memory.

The loop, as in client-go's reflector and kopf's watcher::

    list ──► store := items, rv := list's resourceVersion        (start() returns here)
      └─► watch from rv, allowWatchBookmarks ──► each event: update store, rv := event's rv
            ├─ stream ended (server timeout) ───────────► watch again from rv
            ├─ 410 Gone (rv older than the server keeps) ► list again
            └─ any other error ──────────────► back off ► list again

Tracking the resourceVersion of *every* event, bookmarks included, keeps ``rv`` recent even
for kinds that rarely change, so a reconnect rarely hits 410. Nothing is ever retried with a
version the server has refused: a 410 or an error always leads to a fresh list, never to the
same watch again. A relist is diffed against the store, and subscribers get ADDED, MODIFIED
and synthetic DELETED events for what changed while nobody was watching. Repeated failures
back off by a ``Backoff`` policy (data), so a broken server is not hammered.

The cache talks to the cluster only through ``WatchSource`` (``list_with_version`` and
``watch``), which ``Kube`` satisfies; tests drive the loop with a fake source.

Objects in the cache are shared, not copied: treat what ``get`` and ``items`` return, and
what subscribers receive, as read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Protocol

from gitsail import codec
from gitsail.kube.discovery import check_names
from gitsail.kube.errors import Gone, KubeError
from gitsail.kube.retry import Backoff
from gitsail.kube.watch import WatchEvent
from gitsail.model import Obj

__all__ = ["NamedSource", "SelectingSource", "WatchCache", "WatchSource"]

log = logging.getLogger(__name__)

DEFAULT_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=30.0)

# A stream that ends this soon with no event counts as a failure (backs off), so a proxy
# that closes watches at once cannot make the loop spin.
QUICK_END = 1.0


class WatchSource(Protocol):
    """What the cache needs from a cluster (``Kube`` has these)."""

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]: ...


class SelectingSource(WatchSource, Protocol):
    """A ``WatchSource`` whose watch also takes a field selector (``Kube`` has it)."""

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        field_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]: ...


class NamedSource:
    """A ``WatchSource`` narrowed to one object by name (a field selector on the list and
    the watch), so a watch of ``argocd-secret`` holds no other Secret in memory."""

    def __init__(self, kube: SelectingSource, name: str) -> None:
        self.kube = kube
        self.selector = f"metadata.name={name}"

    async def list_with_version(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        return await self.kube.list_with_version(
            api_version, kind, namespace, label_selector, self.selector
        )

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self.kube.watch(
            api_version,
            kind,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            timeout_seconds=timeout_seconds,
            field_selector=self.selector,
        )


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class WatchCache:
    """List-then-watch cache of ``kind`` objects, optionally in one namespace or selection."""

    def __init__(
        self,
        kube: WatchSource,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        watch_timeout: int = 300,
    ) -> None:
        if namespace:
            check_names("", kind, None, namespace)  # InvalidName now, not at the first list
        self._source = kube
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.backoff = backoff
        self.watch_timeout = watch_timeout
        self._store: dict[tuple[str, str], Obj] = {}
        self._resource_version = ""
        self._subscribers: list[asyncio.Queue[WatchEvent]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_error: KubeError | None = None
        # Counters for metrics and tests: lists done, watch streams opened.
        self.relists = 0
        self.watches = 0

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"WatchCache({self.api_version} {self.kind}{where}, {len(self._store)} objects)"

    # -- public API ---------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The resourceVersion the cache is current to (from the last list or event)."""
        return self._resource_version

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """List (errors propagate), then keep watching in the background."""
        if self._task is not None:
            return
        await self._relist()
        self._task = asyncio.create_task(
            self._run(), name=f"watch-cache {self.api_version} {self.kind}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self._store.get((namespace or "", name))

    def items(self) -> list[Obj]:
        return list(self._store.values())

    def subscribe(self) -> asyncio.Queue[WatchEvent]:
        """A queue of every ADDED, MODIFIED and DELETED after this call (no bookmarks)."""
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[WatchEvent]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        relist = False
        while True:
            try:
                if relist:
                    await self._relist()
                    relist = False
                seen = await self._watch_once()
                if seen:
                    failures = 0
                    self.last_error = None
                    continue
            except Gone as exc:
                log.info("%r: %s; relisting", self, exc)
                self.last_error = exc
                relist = True
                # The first 410 is normal; more in a row without progress back off.
                if failures == 0:
                    failures = 1
                    continue
            except KubeError as exc:
                log.warning("%r: %s; relisting after a pause", self, exc)
                self.last_error = exc
                relist = True
            await asyncio.sleep(self.backoff.delay(failures))
            failures += 1

    async def _watch_once(self) -> bool:
        """One watch stream from the current resourceVersion; True if it made progress."""
        began = time.monotonic()
        seen = 0
        self.watches += 1
        timeout = int(self.watch_timeout * random.uniform(1.0, 2.0))  # noqa: S311 (spread)
        stream = self._source.watch(
            self.api_version,
            self.kind,
            self.namespace,
            resource_version=self._resource_version,
            label_selector=self.label_selector,
            timeout_seconds=timeout,
        )
        async for event in stream:
            seen += 1
            self._apply(event)
        return seen > 0 or time.monotonic() - began >= QUICK_END

    def _apply(self, event: WatchEvent) -> None:
        rv = event.resource_version
        if event.type == "BOOKMARK":
            if rv:
                self._resource_version = rv
            return
        key = _key(event.object)
        if event.type == "DELETED":
            self._store.pop(key, None)
        else:
            self._store[key] = codec.share_strings(event.object)  # (a third of its memory)
        if rv:
            self._resource_version = rv
        self._publish(event)

    async def _relist(self) -> None:
        items, rv = await self._source.list_with_version(
            self.api_version, self.kind, self.namespace, self.label_selector
        )
        old = self._store
        new = {_key(obj): codec.share_strings(obj) for obj in items}
        self._store = new
        self._resource_version = rv
        self.relists += 1
        for key, obj in old.items():
            if key not in new:
                self._publish(WatchEvent("DELETED", obj))
        for key, obj in new.items():
            before = old.get(key)
            if before is None:
                self._publish(WatchEvent("ADDED", obj))
            elif _rv(before) != _rv(obj):
                self._publish(WatchEvent("MODIFIED", obj))

    def _publish(self, event: WatchEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)
