"""Argo CD's ``AppProject`` on the controller's registry of kinds.

Registering the kind gives it a watch cache like every kind (``Controller._watch_kind``);
this module adds what the controller owns:

- the engine's admission (``gitsail.kinds.argo_appproject_admission.ProjectAdmission``)
  reads projects from that cache, so every comparison and sync of an Application is
  checked against its project without an API request;
- a change to a project (its reconcile) re-queues the Applications that use it, so a
  widened or narrowed project takes effect at once — unless they were judged with that very
  spec (the ``default`` project the admission created on first use, seen through the watch);
- the ``default`` project is created on first use when missing (as Argo CD's server does).

A project has no status of its own here: its reconcile writes nothing.
"""

from __future__ import annotations

from gitsail.controller.registry import KindAPI, KindContext, KindDefaults, ObjectKey
from gitsail.kinds.argo_appproject import API_VERSION, KIND
from gitsail.kinds.argo_appproject_admission import ProjectAdmission
from gitsail.model import Obj

__all__ = ["appproject"]


class _AppProjects(KindDefaults):
    def __init__(self, ctx: KindContext) -> None:
        self.api = KindAPI(API_VERSION, KIND)
        self.ctx = ctx
        self.control_namespace = ctx.settings.control_namespace

        async def read(name: str) -> Obj | None:
            return await ctx.read(ObjectKey(KIND, self.control_namespace, name), False)

        self.admission = ProjectAdmission(
            ctx.kube,
            self.control_namespace,
            read,
            clusters=getattr(getattr(ctx.engine, "targets", None), "complete", None),
        )
        ctx.engine.admission = self.admission

    async def reconcile(self, obj: Obj, reasons: frozenset[str]) -> float | None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if (
            self.ctx.enqueue is not None
            and reasons != frozenset({"startup"})
            and not self.admission.judged_with(name, obj)
        ):
            for namespace, app in self.admission.apps_of(name):
                self.ctx.enqueue(ObjectKey("Application", namespace, app), f"project:{name}")
        return None

    def forget(self, key: ObjectKey) -> None:
        if self.ctx.enqueue is None:
            return
        for namespace, app in self.admission.apps_of(key.name):  # deleted: its apps refuse
            self.ctx.enqueue(ObjectKey("Application", namespace, app), f"project:{key.name}")

    def ready(self, obj: Obj) -> bool:
        return True

    def wakes(self, old: Obj, new: Obj) -> bool:
        return old.get("spec") != new.get("spec")


def appproject(ctx: KindContext) -> _AppProjects:
    return _AppProjects(ctx)
