"""A stand-in for a Flux kind's module, for the registration seam's tests
(``gitsail.controller.manager.flux_kinds``)."""

from __future__ import annotations

from gitsail.controller.registry import KindAPI, KindContext, KindDefaults
from gitsail.model import Obj

BUILT: list[KindContext] = []


class FakeGitRepositoryReconciler(KindDefaults):
    api = KindAPI("source.toolkit.fluxcd.io/v1", "GitRepository")

    def __init__(self, ctx: KindContext) -> None:
        BUILT.append(ctx)

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        return None


NOT_A_FACTORY = "a module attribute that cannot build a reconciler"
