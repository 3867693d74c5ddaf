"""The engine's seam for a policy that may refuse a delivery (Argo CD's AppProject).

The engine asks, in this order, and changes nothing when refused:

- ``admit(app)`` before the fetch (repository, destination, project use);
- ``admit_objects(app, objects)`` on the rendered, prepared objects before any dry run
  (kinds and namespaces the delivery may touch);
- ``sync_refused(app, automated=...)`` before a sync operation runs (sync windows).

Each returns ``""`` when allowed, else the reason. A refusal of the first two becomes a
``ComparisonError`` with reason ``InvalidSpecError`` (the condition Argo CD writes); a
refused sync ends its operation with that message. The implementation lives above this
layer (``gitsail.kinds.argo_appproject_admission``); without one everything is admitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gitsail.app.model import Delivery
from gitsail.model import Obj

__all__ = ["INVALID_SPEC", "Admission"]

INVALID_SPEC = "InvalidSpecError"


class Admission(Protocol):
    async def admit(self, app: Delivery) -> str: ...

    async def admit_objects(self, app: Delivery, objects: Sequence[Obj]) -> str: ...

    async def sync_refused(self, app: Delivery, *, automated: bool) -> str: ...

    async def stamp(self, app: Delivery) -> object:
        """What the checks of ``app`` read, comparable with ``==`` (its project's
        version): equal stamps, equal answers."""
        ...
