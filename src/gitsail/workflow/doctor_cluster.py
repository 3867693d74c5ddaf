"""``gitsail doctor --cluster``: the checklist's items that only the live cluster can show.

Read-only (list calls with the current kubeconfig's identity; nothing is written):

- ``no-automated-sync``, ``no-self-heal``, ``no-prune`` on the Argo CD Applications and Flux
  Kustomizations *as they are in the cluster* (an app created by hand, or changed after it
  left Git, is what really runs) — the same rules as on files (``sync_policy_findings``);
- ``recurring-drift``: the warning sign "no drift detection", turned around: drift that is
  detected again and again. gitsail's reconciler records each drift it attributes (who
  changed which field, from ``managedFields``) as a ``DriftDetected`` Event on the app,
  aggregated with a ``count``; an app whose Events add up to ``DRIFT_REPEATS`` or more has
  something fighting Git (an autoscaler on ``replicas``, a ``kubectl edit`` habit, another
  controller). The finding names the fields and managers from the last message;
- ``mutable-tag``: containers of running Pods whose image has the tag ``latest`` or none
  (one finding per owner and image, not per replica).

A kind that the cluster does not serve (no Argo CD or Flux CRDs), or that the identity may
not list, is not checked and said so; any other failure (an unreachable cluster) is an
error, never "no findings". The
amount read is bounded (``MAX_OBJECTS`` per kind; more is said in a finding-free note).
Findings carry ``cluster:KIND/NAMESPACE/NAME`` where a file finding carries its path, and
line 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gitsail.kube import Forbidden, Kube, NotFound, NotFoundKind
from gitsail.model import Obj
from gitsail.workflow.doctor import Finding, sync_policy_findings
from gitsail.workflow.imageref import ImageRefError, parse_image

__all__ = ["DRIFT_REPEATS", "MAX_OBJECTS", "ClusterReport", "cluster_findings"]

DRIFT_REPEATS = 3
MAX_OBJECTS = 20_000
MAX_QUOTED = 300  # characters of a drift message quoted in a finding

APPS = (
    ("argoproj.io/v1alpha1", "Application"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
)


@dataclass(frozen=True)
class ClusterReport:
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]  # what could not be checked, and why


def _where(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"cluster:{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name', '')}"


def _no_line(*_keys: str) -> int:
    return 0


def app_findings(objs: Iterable[Obj]) -> list[Finding]:
    found: list[Finding] = []
    for obj in objs:
        found.extend(sync_policy_findings(obj, _where(obj), _no_line))
    return found


def drift_findings(events: Iterable[Obj], repeats: int = DRIFT_REPEATS) -> list[Finding]:
    """``recurring-drift`` from gitsail's ``DriftDetected`` Events (see the docstring)."""
    total: dict[tuple[str, str, str], int] = {}
    last: dict[tuple[str, str, str], tuple[str, str]] = {}
    for event in events:
        if event.get("reason") != "DriftDetected":
            continue
        involved = event.get("involvedObject") or {}
        key = (
            str(involved.get("kind") or ""),
            str(involved.get("namespace") or ""),
            str(involved.get("name") or ""),
        )
        count = event.get("count")
        total[key] = total.get(key, 0) + (count if isinstance(count, int) and count > 0 else 1)
        stamp = str(event.get("lastTimestamp") or event.get("eventTime") or "")
        if key not in last or stamp >= last[key][0]:
            last[key] = (stamp, str(event.get("message") or ""))
    found = []
    for key, n in sorted(total.items()):
        if n < repeats:
            continue
        kind, ns, name = key
        message = last[key][1]
        if len(message) > MAX_QUOTED:
            message = message[:MAX_QUOTED] + "…"
        found.append(
            Finding(
                "recurring-drift",
                "warning",
                f"cluster:{kind}/{ns}/{name}",
                0,
                f"{kind} {name}: drift detected {n} times (last: {message})",
                "find the writer named there (an autoscaler: leave replicas out of Git or "
                "add ignoreDifferences; a person: change Git instead; another controller: "
                "give it the field) so Git and the cluster stop fighting",
            )
        )
    return found


def _owner(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return f"{ref.get('kind')}/{meta.get('namespace', '')}/{ref.get('name')}"
    return f"Pod/{meta.get('namespace', '')}/{meta.get('name', '')}"


def image_findings(pods: Iterable[Obj]) -> list[Finding]:
    """``mutable-tag`` for running containers (one per owner and image)."""
    seen: set[tuple[str, str]] = set()
    found = []
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        owner = _owner(pod)
        for container in containers:
            if not isinstance(container, dict):
                continue
            image = str(container.get("image") or "")
            try:
                ref = parse_image(image)
            except ImageRefError:
                continue
            if ref.digest or (ref.tag and ref.tag != "latest"):
                continue
            if (owner, image) in seen:
                continue
            seen.add((owner, image))
            what = "the tag latest" if ref.tag else "no tag (latest)"
            found.append(
                Finding(
                    "mutable-tag",
                    "warning",
                    f"cluster:{owner}",
                    0,
                    f"{owner} runs {image} ({what}): a restart may run other code",
                    f"pin a version or digest in Git: gitsail image set DIR {ref.name}:VERSION",
                )
            )
    return found


async def _list(
    kube: Kube, api: str, kind: str, notes: list[str], field_selector: str | None = None
) -> list[Obj]:
    try:
        items = await kube.list(api, kind, field_selector=field_selector)
    except (NotFoundKind, NotFound, Forbidden) as exc:  # not served here, or not for us
        notes.append(f"{kind} ({api}) not checked: {exc}")
        return []
    if len(items) > MAX_OBJECTS:
        notes.append(f"{kind}: only the first {MAX_OBJECTS} of {len(items)} checked")
        items = items[:MAX_OBJECTS]
    return items


async def cluster_findings(kube: Kube, *, drift_repeats: int = DRIFT_REPEATS) -> ClusterReport:
    """Every cluster finding (read-only)."""
    notes: list[str] = []
    findings: list[Finding] = []
    for api, kind in APPS:
        findings.extend(app_findings(await _list(kube, api, kind, notes)))
    events = await _list(kube, "v1", "Event", notes, "reason=DriftDetected")
    findings.extend(drift_findings(events, drift_repeats))
    findings.extend(image_findings(await _list(kube, "v1", "Pod", notes)))
    findings.sort(key=lambda f: (f.file, f.rule, f.message))
    return ClusterReport(tuple(findings), tuple(notes))
