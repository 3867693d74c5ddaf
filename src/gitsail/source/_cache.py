"""A byte budget for the source caches: whole entries, evicted least recently used first.

An entry is one directory directly under one of the ledger's directories: a checkout
(``checkouts/<sha>``), a mirror (``repos/<key>.git``) or an unpacked chart
(``charts/<sha>``). Names starting with ``.`` are work in progress (``.partial``) or on their
way out (``.evicted``) and are never entries. An entry's last use is its directory's mtime,
set on every use, so the order survives a restart; its size is the apparent size of its
files, measured when it is recorded (and once, on first use, for entries already on disk).

``record`` (an entry was created or grew) evicts down to the budget. An entry is never
evicted while it is in use:

- while a ``hold`` on it is open (a fetch or an unpack working in it);
- while an Artifact leased to it (``lease``) is alive: the renderer and the reconciler read
  ``artifact.root`` after the fetch returned, and the lease ends when the Artifact is
  garbage-collected;
- within ``keep_recent`` seconds of its last use (covers the steps between finding an
  entry and leasing it).

Eviction renames the entry to a hidden name first — on the event loop, so no coroutine can
find it half-removed; a later use simply builds it again — then removes it in a thread. When
everything left is in use, the cache stays over budget until entries are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gitsail.source._fs import remove_tree

__all__ = ["CacheLedger", "tree_size"]

TOUCH_INTERVAL = 60.0  # seconds between two writes of an entry's mtime


def tree_size(tree: Path) -> int:
    """Apparent bytes of the files (and links) under ``tree``; links are not followed."""
    total = 0
    for current, _, files in os.walk(tree):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(current) / name).lstat().st_size
    return total


class CacheLedger:
    """Tracks the entries under ``dirs`` and keeps their total size within ``limit`` bytes."""

    def __init__(
        self,
        dirs: Sequence[Path],
        *,
        limit: int,
        keep_recent: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dirs = tuple(dirs)
        self.limit = limit
        self.keep_recent = keep_recent
        self.evictions = 0  # entries removed, for tests and metrics
        self._clock = clock
        self._sizes: dict[Path, int] = {}
        self._last_use: dict[Path, float] = {}
        self._holds: Counter[Path] = Counter()
        self._lock = threading.Lock()  # lease finalizers may run on another thread
        self._scanned = False

    @property
    def total(self) -> int:
        """Bytes of the entries the ledger knows."""
        return sum(self._sizes.values())

    def in_use(self, entry: Path) -> bool:
        with self._lock:
            return self._holds[entry] > 0

    def touch(self, entry: Path) -> None:
        """``entry`` was used now (on disk too, for a restarted process's eviction order,
        at most once a minute: every poll of every app touches its checkout)."""
        now = self._clock()
        before = self._last_use.get(entry)
        self._last_use[entry] = now
        if before is not None and now - before < TOUCH_INTERVAL:
            return
        with contextlib.suppress(OSError):
            os.utime(entry, (now, now))

    @contextlib.contextmanager
    def hold(self, entry: Path) -> Iterator[None]:
        """``entry`` is in use (never evicted) inside the ``with`` block."""
        self._acquire(entry)
        try:
            yield
        finally:
            self._release(entry)

    def lease(self, entry: Path, owner: object) -> None:
        """``entry`` is in use for as long as ``owner`` (an Artifact) is alive."""
        self._acquire(entry)
        weakref.finalize(owner, self._release, entry)

    async def record(self, entry: Path) -> None:
        """``entry`` was created or changed: measure it, mark it used, evict to the budget."""
        self.touch(entry)
        if not self._scanned:
            self._scanned = True
            found = await asyncio.to_thread(self._scan)
            for path, (size, mtime) in found.items():
                self._sizes.setdefault(path, size)
                self._last_use.setdefault(path, mtime)
        self._sizes[entry] = await asyncio.to_thread(tree_size, entry)
        with self.hold(entry):  # the caller is about to hand it out
            await self.evict()

    async def evict(self) -> list[Path]:
        """Remove least recently used entries not in use until the total fits the budget."""
        hidden: list[Path] = []
        victims: list[Path] = []
        for entry in self._victims():
            tomb = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}.evicted")
            try:
                entry.rename(tomb)
            except FileNotFoundError:
                pass  # already gone: just forget it
            except OSError:
                continue
            else:
                hidden.append(tomb)
            victims.append(entry)
            self._sizes.pop(entry, None)
            self._last_use.pop(entry, None)
        for tomb in hidden:
            await asyncio.to_thread(remove_tree, tomb)
        self.evictions += len(hidden)
        return victims

    # -- internals -----------------------------------------------------------------------

    def _acquire(self, entry: Path) -> None:
        with self._lock:
            self._holds[entry] += 1
        self.touch(entry)

    def _release(self, entry: Path) -> None:
        with self._lock:
            self._holds[entry] -= 1
            if self._holds[entry] <= 0:
                del self._holds[entry]

    def _victims(self) -> list[Path]:
        excess = self.total - self.limit
        if excess <= 0:
            return []
        now = self._clock()
        out = []
        for entry in sorted(self._sizes, key=lambda e: self._last_use.get(e, 0.0)):
            if excess <= 0:
                break
            if self.in_use(entry) or now - self._last_use.get(entry, 0.0) < self.keep_recent:
                continue
            out.append(entry)
            excess -= self._sizes[entry]
        return out

    def _scan(self) -> dict[Path, tuple[int, float]]:
        """Entries already on disk (size, last use); leftovers of interrupted evictions go."""
        found: dict[Path, tuple[int, float]] = {}
        for directory in self.dirs:
            if not directory.is_dir():
                continue
            for child in directory.iterdir():
                if child.name.startswith("."):
                    if child.name.endswith(".evicted"):
                        remove_tree(child)
                    continue
                if child.is_symlink() or not child.is_dir():
                    continue
                with contextlib.suppress(OSError):
                    found[child] = (tree_size(child), child.stat().st_mtime)
        return found
