"""``gitsail doctor``: a manifests repository against the article's GitOps checklist.

Each rule is a function over the repository's YAML documents (with their file and line) or
over its CI files, and yields ``Finding`` records: the rule, a severity, file:line, what is
wrong and how to fix it. The rules and the checklist item or warning sign each one checks:

- ``plain-secret``: "Secrets handled securely (not plain in Git)", and the warning sign
  "Secrets committed to Git (even base64)";
- ``mutable-tag``: ``:latest`` or no tag is not a version: what runs changes without a commit;
- ``no-automated-sync``: "Automated sync enabled";
- ``no-self-heal``: "Drift detection/self-healing enabled" ("No drift detection");
- ``no-prune``: "Cluster state doesn't match Git" (objects deleted from Git keep running);
- ``ci-applies-to-cluster``: "All changes go through Git (no kubectl apply)", and the warning
  signs "Developers running kubectl apply directly" and "Manual deployment steps";
- ``credentials-in-url``: a token in a repository URL is a secret committed to Git;
- ``mixed-tools``: the warning sign "Different tools for different environments";
- ``no-limits``, ``no-probes``: production workloads get limits and probes (the article's
  production values set both).

Limits and probes are checked on the *rendered* production apps (an overlay may patch them
in), through the ``render`` callback; every other rule reads the files. Nothing here contacts
a cluster. A file that is not valid YAML is itself a finding (``invalid-yaml``), never skipped
silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitsail.model import Obj
from gitsail.render import RenderError, detect_tool
from gitsail.workflow.imageref import ImageRefError, parse_image
from gitsail.workflow.imageset import KUSTOMIZATION_NAMES
from gitsail.workflow.preview import AppSource, app_source

__all__ = ["RULES", "Finding", "doctor", "sarif", "sync_policy_findings"]

MAX_FILES = 20_000
MAX_FILE_BYTES = 1024 * 1024

RULES: dict[str, str] = {
    "plain-secret": "Secrets handled securely (not plain in Git)",
    "mutable-tag": "Images pinned to an immutable version",
    "no-automated-sync": "Automated sync enabled",
    "no-self-heal": "Drift detection/self-healing enabled",
    "no-prune": "Cluster state matches Git (prune)",
    "ci-applies-to-cluster": "All changes go through Git (no kubectl apply)",
    "credentials-in-url": "No credentials in repository URLs",
    "mixed-tools": "The same tool for every environment",
    "no-limits": "Production workloads have resource limits",
    "no-probes": "Production workloads have probes",
    "recurring-drift": "Drift detected and fixed at its cause (not again and again)",
    "invalid-yaml": "Every manifest can be read",
    "invalid-app": "Every app's spec is valid",
    "render-failed": "Every app renders",
}

_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
_CI_FILES = (".github/workflows", ".gitlab-ci.yml", "Jenkinsfile", ".circleci", "azure-pipelines")
_CLUSTER_WRITE = re.compile(
    r"\b(kubectl\s+(?:[^\n|;&]*\s)?(?:apply|create|replace|delete|patch|set\s+image|rollout\s+restart)"
    r"|helm\s+(?:[^\n|;&]*\s)?(?:upgrade|install|uninstall|rollback))\b"
)
_CRED_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s@'\"]+@", re.IGNORECASE)
_TOKEN_URL = re.compile(r"\bhttps?://(?:gh[pousr]_|glpat-|x-access-token:)[^\s@]*@", re.IGNORECASE)

Render = Callable[[AppSource, Path], list[Obj]]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "error" | "warning"
    file: str
    line: int
    message: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "checklist": RULES[self.rule],
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class _Doc:
    file: str
    node: Node
    obj: Any


def _files(root: Path) -> Iterator[Path]:
    count = 0
    for path in sorted(root.rglob("*")):
        if ".git" in path.relative_to(root).parts or not path.is_file() or path.is_symlink():
            continue
        count += 1
        if count > MAX_FILES:
            return
        yield path


def _node_at(node: Node, *keys: str) -> Node | None:
    for key in keys:
        if not isinstance(node, MappingNode):
            return None
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                node = v
                break
        else:
            return None
    return node


def _line(doc: _Doc, *keys: str) -> int:
    node = _node_at(doc.node, *keys) or doc.node
    return int(node.start_mark.line) + 1


def _load(root: Path, findings: list[Finding]) -> list[_Doc]:
    docs: list[_Doc] = []
    for path in _files(root):
        if path.suffix not in (".yaml", ".yml"):
            continue
        rel = path.relative_to(root).as_posix()
        if "/templates/" in f"/{rel}" or path.stat().st_size > MAX_FILE_BYTES:
            continue  # Helm templates are not YAML until rendered
        try:
            text = path.read_text(encoding="utf-8")
            nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
            objs = list(yaml.safe_load_all(text))
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            findings.append(
                Finding(
                    "invalid-yaml",
                    "error",
                    rel,
                    1,
                    f"cannot be read: {exc}".split("\n")[0],
                    "fix the YAML; gitsail cannot check or sync what it cannot read",
                )
            )
            continue
        objs = [o for o in objs if o is not None]
        docs.extend(_Doc(rel, n, o) for n, o in zip(nodes, objs, strict=False))
    return docs


# -- rules over documents ----------------------------------------------------------------------


def _plain_secrets(docs: Sequence[_Doc]) -> Iterator[Finding]:
    for doc in docs:
        obj = doc.obj
        if not isinstance(obj, dict) or obj.get("kind") != "Secret":
            continue
        if str(obj.get("apiVersion")) != "v1" or not (obj.get("data") or obj.get("stringData")):
            continue
        name = (obj.get("metadata") or {}).get("name", "")
        field = "data" if obj.get("data") else "stringData"
        yield Finding(
            "plain-secret", "error", doc.file, _line(doc, field),
            f"Secret {name} is in Git with its values ({field}: base64 is not encryption)",
            f"seal it: gitsail seal < {doc.file} > sealed.yaml, commit the SealedSecret and "
            "delete this file (or use an ExternalSecret); then rotate the values",
        )  # fmt: skip


def _images(node: Node, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], ScalarNode]]:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode):
                if k.value == "image" and isinstance(v, ScalarNode):
                    yield (*path, "image"), v
                else:
                    yield from _images(v, (*path, str(k.value)))
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _images(item, (*path, "-"))


def _mutable_tags(docs: Sequence[_Doc]) -> Iterator[Finding]:
    for doc in docs:
        obj = doc.obj
        if not isinstance(obj, dict):
            continue
        if Path(doc.file).name in KUSTOMIZATION_NAMES:
            for item in obj.get("images") or []:
                if isinstance(item, dict) and str(item.get("newTag")) == "latest":
                    yield Finding(
                        "mutable-tag", "warning", doc.file, _line(doc, "images"),
                        f"images: {item.get('name')} is set to the tag latest",
                        "set a version or digest: gitsail image set DIR NAME:TAG",
                    )  # fmt: skip
            continue
        if not (obj.get("apiVersion") and obj.get("kind")):
            continue  # values files: their tags are checked when rendered
        for path, node in _images(doc.node):
            if "containers" not in path and "initContainers" not in path:
                continue
            try:
                ref = parse_image(str(node.value))
            except ImageRefError:
                continue
            if ref.digest or (ref.tag and ref.tag != "latest"):
                continue
            what = "the tag latest" if ref.tag else "no tag (latest)"
            yield Finding(
                "mutable-tag", "warning", doc.file, int(node.start_mark.line) + 1,
                f"image {ref} has {what}: what runs changes without a commit",
                f"pin a version or digest: gitsail image set DIR {ref.name}:VERSION",
            )  # fmt: skip


def _sync_policies(docs: Sequence[_Doc]) -> Iterator[Finding]:
    for doc in docs:
        if isinstance(doc.obj, dict):
            yield from sync_policy_findings(doc.obj, doc.file, partial(_line, doc))


def sync_policy_findings(obj: Obj, where: str, line: Callable[..., int]) -> Iterator[Finding]:
    """The sync-policy rules for one Application or Flux Kustomization (from a file, or
    live from the cluster: ``where`` names it, ``line(*keys)`` is the line of a key)."""
    api, kind = str(obj.get("apiVersion") or ""), obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "")
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        return
    if api.startswith("argoproj.io/") and kind == "Application":
        policy = spec.get("syncPolicy") or {}
        automated = policy.get("automated") if isinstance(policy, dict) else None
        if not isinstance(automated, dict) or automated.get("enabled") is False:
            yield Finding(
                "no-automated-sync", "warning", where, line("spec"),
                f"Application {name} syncs only by hand",
                "add spec.syncPolicy.automated: {prune: true, selfHeal: true}",
            )  # fmt: skip
            return
        if automated.get("selfHeal") is not True:
            yield Finding(
                "no-self-heal", "warning", where, line("spec", "syncPolicy"),
                f"Application {name} does not revert drift",
                "set spec.syncPolicy.automated.selfHeal: true",
            )  # fmt: skip
        if automated.get("prune") is not True:
            yield Finding(
                "no-prune", "warning", where, line("spec", "syncPolicy"),
                f"Application {name} leaves objects deleted from Git running",
                "set spec.syncPolicy.automated.prune: true",
            )  # fmt: skip
    elif api.startswith("kustomize.toolkit.fluxcd.io/") and kind == "Kustomization":
        if spec.get("prune") is not True:
            yield Finding(
                "no-prune", "warning", where, line("spec"),
                f"Kustomization {name} leaves objects deleted from Git running",
                "set spec.prune: true",
            )  # fmt: skip
        if spec.get("suspend") is True:
            yield Finding(
                "no-automated-sync", "warning", where, line("spec", "suspend"),
                f"Kustomization {name} is suspended",
                "remove spec.suspend (suspend for an incident with gitsail suspend)",
            )  # fmt: skip


def _url_fields(node: Node) -> Iterator[ScalarNode]:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if (
                isinstance(k, ScalarNode)
                and k.value in ("repoURL", "url")
                and isinstance(v, ScalarNode)
            ):
                yield v
            else:
                yield from _url_fields(v)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _url_fields(item)


def _credentials_in_urls(docs: Sequence[_Doc]) -> Iterator[Finding]:
    for doc in docs:
        for node in _url_fields(doc.node):
            text = str(node.value)
            if _CRED_URL.search(text) or _TOKEN_URL.search(text):
                yield Finding(
                    "credentials-in-url", "error", doc.file, int(node.start_mark.line) + 1,
                    "a repository URL carries credentials (they are now in Git's history)",
                    "remove them from the URL, put them in a repository Secret, rotate them",
                )  # fmt: skip


def _mixed_tools(root: Path, apps: Sequence[AppSource]) -> Iterator[Finding]:
    """Environments of one app (sibling overlay directories) rendered by different tools."""
    groups: dict[Path, dict[str, str]] = {}
    for app in apps:
        directory = (root / app.path).resolve()
        if not directory.is_dir():
            continue
        tool = detect_tool(directory, app.options)
        groups.setdefault(directory.parent, {})[app.path] = tool
    for parent, tools in groups.items():
        if len(set(tools.values())) > 1 and len(tools) > 1:
            shown = ", ".join(f"{p} ({t})" for p, t in sorted(tools.items()))
            yield Finding(
                "mixed-tools", "warning", parent.relative_to(root.resolve()).as_posix(), 0,
                f"environments of one app use different tools: {shown}",
                "render every environment with one tool (one base, one overlay each)",
            )  # fmt: skip


def _ci_files(root: Path) -> Iterator[Finding]:
    for path in _files(root):
        rel = path.relative_to(root).as_posix()
        if not any(rel == c or rel.startswith(c + "/") for c in _CI_FILES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            match = _CLUSTER_WRITE.search(line)
            if match:
                yield Finding(
                    "ci-applies-to-cluster", "error", rel, number,
                    f"CI writes to a cluster directly ({match.group(1).split()[0]} "
                    f"{match.group(1).split()[-1]}): the cluster stops matching Git",
                    "let CI commit the change instead (gitsail image set DIR NAME:TAG --push) "
                    "and the controller sync it; CI then needs no cluster credentials",
                )  # fmt: skip


def _production(app: AppSource) -> bool:
    text = f"{app.name} {app.path} {app.options.namespace}".lower()
    return "prod" in text


def _workload_checks(app: AppSource, objs: Sequence[Obj]) -> Iterator[Finding]:
    for obj in objs:
        if obj.get("kind") not in _WORKLOADS:
            continue
        spec = obj.get("spec") or {}
        if obj.get("kind") == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        pod = spec if obj.get("kind") == "Pod" else ((spec.get("template") or {}).get("spec") or {})
        name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name', '')}"
        for container in pod.get("containers") or []:
            if not isinstance(container, dict):
                continue
            cname = container.get("name", "")
            limits = (container.get("resources") or {}).get("limits")
            if not limits:
                yield Finding(
                    "no-limits", "warning", app.path, 0,
                    f"{app.id}: {name} container {cname} has no resource limits",
                    "set resources.limits in the production overlay or values",
                )  # fmt: skip
            if obj.get("kind") in ("Job", "CronJob", "Pod"):
                continue
            if not (container.get("readinessProbe") or container.get("livenessProbe")):
                yield Finding(
                    "no-probes", "warning", app.path, 0,
                    f"{app.id}: {name} container {cname} has no readiness or liveness probe",
                    "add a readinessProbe (and a livenessProbe) so health means serving",
                )  # fmt: skip


def doctor(root: Path, *, render: Render | None = None) -> list[Finding]:
    """Every finding for the repository at ``root`` (sorted by file and line)."""
    root = root.resolve()
    findings: list[Finding] = []
    docs = _load(root, findings)
    for rule in (_plain_secrets, _mutable_tags, _sync_policies, _credentials_in_urls):
        findings.extend(rule(docs))
    findings.extend(_ci_files(root))
    apps: dict[str, AppSource] = {}
    for doc in docs:
        if isinstance(doc.obj, dict):
            try:
                app = app_source(doc.obj)
            except (ValueError, TypeError, AttributeError) as exc:
                findings.append(Finding("invalid-app", "error", doc.file, 1, str(exc),
                                        "fix the app's spec"))  # fmt: skip
                app = None
            if app is not None:
                apps.setdefault(app.id, app)
    findings.extend(_mixed_tools(root, list(apps.values())))
    if render is not None:
        for app in apps.values():
            if not _production(app) or not (root / app.path).is_dir():
                continue
            try:
                objs = render(app, root)
            except RenderError as exc:
                findings.append(
                    Finding(
                        "render-failed",
                        "error",
                        app.path,
                        0,
                        f"{app.id}: {exc}",
                        "fix the render (gitsail render)",
                    )
                )
                continue
            findings.extend(_workload_checks(app, objs))
    unique = {(f.rule, f.file, f.line, f.message): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.file, f.line, f.rule, f.message))


def sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    """SARIF 2.1.0 (what code-scanning UIs read)."""
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "gitsail doctor",
                        "rules": [
                            {"id": rule, "shortDescription": {"text": text}}
                            for rule, text in RULES.items()
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": f.rule,
                        "level": f.severity,
                        "message": {"text": f"{f.message}. Fix: {f.fix}"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": f.file},
                                    **({"region": {"startLine": f.line}} if f.line else {}),
                                }
                            }
                        ],
                    }
                    for f in findings
                ],
            }
        ],
    }
