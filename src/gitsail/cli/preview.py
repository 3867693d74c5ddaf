"""`gitsail preview BASE..HEAD`: which apps a change affects, and their rendered diffs."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.markup import escape

from gitsail.cli.output import console, fail
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.model import Obj
from gitsail.policy import Policy, PolicyError
from gitsail.render import RenderError, RenderOptions, render_local
from gitsail.source import SourceError, normalize_repo_url
from gitsail.source.yamledit import EditError
from gitsail.workflow.gitops import GitError, Repo
from gitsail.workflow.live import live_diffs
from gitsail.workflow.preview import AppSource, Preview, app_source, offline_apps, preview
from gitsail.workflow.remote_preview import PASSWORD_ENV, preview_remote, remote_credentials
from gitsail.workflow.rendered import ObjectDiff, markdown_diff

__all__ = ["preview_cmd"]

ARGO = ("argoproj.io/v1alpha1", "Application")
FLUX_KS = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
FLUX_GIT = ("source.toolkit.fluxcd.io/v1", "GitRepository")


class PreviewFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    markdown = "markdown"


def _render(app_dir: Path, root: Path, options: RenderOptions) -> list[Obj]:
    return list(render_local(app_dir, options, root=root).manifests)


def _split(revisions: str) -> tuple[str, str]:
    base, dots, head = revisions.partition("..")
    if not dots or head.startswith("."):
        raise fail(f"{revisions!r}: give BASE..HEAD (two revisions)")
    return base or "HEAD", head or "HEAD"


async def _cluster_apps(
    kubeconfig: str | None, context: str | None, remote_url: str
) -> list[AppSource]:
    """Applications and Kustomizations in the cluster that render this repository."""
    wanted = normalize_repo_url(remote_url)
    found: list[AppSource] = []
    async with Kube(await load_kubeconfig(kubeconfig, context)) as kube:
        try:
            apps = await kube.list(*ARGO)
        except KubeError:
            apps = []  # Argo CD's kind is not served here
        for obj in apps:
            source = (obj.get("spec") or {}).get("source") or {}
            if normalize_repo_url(str(source.get("repoURL") or "")) == wanted:
                app = _safe_source(obj)
                if app is not None:
                    found.append(app)
        try:
            repos = await kube.list(*FLUX_GIT)
            kustomizations = await kube.list(*FLUX_KS)
        except KubeError:
            repos, kustomizations = [], []
        ours = {
            (r["metadata"].get("namespace"), r["metadata"].get("name"))
            for r in repos
            if normalize_repo_url(str((r.get("spec") or {}).get("url") or "")) == wanted
        }
        for obj in kustomizations:
            ref = (obj.get("spec") or {}).get("sourceRef") or {}
            ns = ref.get("namespace") or obj["metadata"].get("namespace")
            if ref.get("kind") == "GitRepository" and (ns, ref.get("name")) in ours:
                app = _safe_source(obj)
                if app is not None:
                    found.append(app)
    return found


def _safe_source(obj: Obj) -> AppSource | None:
    try:
        return app_source(obj)
    except (ValueError, TypeError, AttributeError):  # an app gitsail cannot parse
        meta = obj.get("metadata") or {}
        console.print(f"[yellow]skipped {obj.get('kind')} {meta.get('name')}: invalid spec[/]")
        return None


def preview_cmd(
    revisions: str = typer.Argument(
        ...,
        metavar="BASE..HEAD|BASE",
        help="BASE..HEAD (commits, branches or tags), or BASE with HEAD after it",
    ),
    head_revision: str | None = typer.Argument(None, metavar="[HEAD]", help="HEAD (with BASE)"),
    offline: bool = typer.Option(
        False, "--offline", help="find apps in the repository's own manifests, not the cluster"
    ),
    remote: str = typer.Option("origin", "--remote", help="the remote the cluster's apps use"),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
    output: PreviewFormat = typer.Option(
        PreviewFormat.table, "--output", "-o", help="table, json, yaml or markdown"
    ),
    repo_arg: str = typer.Option(
        ".",
        "--repo",
        help="the checkout (default: here); with --pr, the remote repository's URL "
        "(default: the checkout's --remote URL)",
    ),
    pr: bool = typer.Option(
        False,
        "--pr",
        help="fetch BASE and HEAD from the remote (refs of a pull request) into a private "
        f"cache instead of reading the checkout; a token in ${PASSWORD_ENV}",
    ),
    live: bool = typer.Option(
        False, "--live", help="also diff each affected app's head render against the cluster"
    ),
) -> None:
    """Which apps a change affects (by the digest of the files each renders) and how their
    rendered manifests change. Exit 1 when something changes."""
    if head_revision is not None:
        if ".." in revisions:
            raise fail("give BASE..HEAD or BASE HEAD, not both")
        base, head = revisions, head_revision
    else:
        base, head = _split(revisions)
    config = kubeconfig.split(":")[0] if kubeconfig else None
    live_report: dict[str, list[ObjectDiff]] = {}
    try:
        if pr:
            result, live_report = _preview_pr(
                repo_arg, remote, base, head, offline=offline, live=live,
                kubeconfig=config, context=context,
            )  # fmt: skip
        else:
            repo = Repo.at(Path(repo_arg))
            if offline:
                result = preview(repo, base, head, apps=offline_apps, render=_render)
            else:
                url = repo.remote_url(remote)
                found = asyncio.run(_cluster_apps(config, context, url))
                result = preview(repo, base, head, apps=lambda _b, _h: found, render=_render)
            if live:
                live_report = _live(repo, head, result, config, context)
    except (GitError, EditError, RenderError, KubeError, SourceError, PolicyError) as exc:
        raise fail(str(exc)) from exc
    _print(result, output, live_report if live else None)
    if live_report and any(live_report.values()):
        raise typer.Exit(1)
    if any(p.diffs or p.error or p.change != "changed" for p in result.affected):
        raise typer.Exit(1)


def _preview_pr(
    repo_arg: str,
    remote: str,
    base: str,
    head: str,
    *,
    offline: bool,
    live: bool,
    kubeconfig: str | None,
    context: str | None,
) -> tuple[Preview, dict[str, list[ObjectDiff]]]:
    """``--pr``: both refs fetched from the remote by the source layer (see
    ``gitsail.workflow.remote_preview``)."""
    url = repo_arg if repo_arg != "." else Repo.at(Path()).remote_url(remote)
    policy = Policy.from_env()  # GITSAIL_ALLOW_FILE_URLS=true for a repository on disk
    creds = remote_credentials(url)
    if offline:
        apps: Callable[[Path, Path], Sequence[AppSource]] = offline_apps
    else:
        found = asyncio.run(_cluster_apps(kubeconfig, context, url))
        apps = lambda _b, _h: found  # noqa: E731
    live_report: dict[str, list[ObjectDiff]] = {}

    def on_head(root: Path, result: Preview) -> None:
        live_report.update(_live_at(root, result, kubeconfig, context))

    result = preview_remote(
        url, base, head, apps=apps, render=_render, policy=policy, creds=creds,
        on_head=on_head if live else None,
    )  # fmt: skip
    return result, live_report


def _live(
    repo: Repo, head: str, result: Preview, kubeconfig: str | None, context: str | None
) -> dict[str, list[ObjectDiff]]:
    """Per affected app (not removed), its head render against the cluster."""
    scratch = Path(tempfile.mkdtemp(prefix="gitsail-live-"))
    try:
        root = scratch / "head"
        repo.export(head, root)
        return _live_at(root, result, kubeconfig, context)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _live_at(
    root: Path, result: Preview, kubeconfig: str | None, context: str | None
) -> dict[str, list[ObjectDiff]]:
    rendered: dict[str, tuple[list[Obj], str]] = {}
    for p in result.affected:
        if p.change != "removed" and not p.error:
            objs = _render(root / p.app.path, root, p.app.options)
            rendered[p.app.id] = (objs, p.app.options.namespace)

    async def compare() -> dict[str, list[ObjectDiff]]:
        async with Kube(await load_kubeconfig(kubeconfig, context)) as kube:
            return {
                app: await live_diffs(kube, objs, namespace)
                for app, (objs, namespace) in rendered.items()
            }

    return asyncio.run(compare())


def _print(
    result: Preview, output: PreviewFormat, live: dict[str, list[ObjectDiff]] | None
) -> None:
    data: dict[str, Any] = result.as_dict()
    if live is not None:
        data["live"] = {
            app: [
                {
                    "kind": d.kind,
                    "namespace": d.namespace,
                    "name": d.name,
                    "change": d.change,
                    "diff": d.diff,
                }
                for d in diffs
            ]
            for app, diffs in live.items()
        }
    if output is PreviewFormat.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif output is PreviewFormat.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    elif output is PreviewFormat.markdown:
        sys.stdout.write(result.markdown())
        for app, diffs in (live or {}).items():
            sys.stdout.write(f"\n### `{app}` against the cluster\n\n{markdown_diff(diffs)}")
    else:
        console.print(
            f"{len(result.affected)} of {result.apps_considered} apps affected "
            f"({result.renders} renders), {result.base[:12]}..{result.head[:12]}"
        )
        for p in result.affected:
            console.print(f"\n[bold]{escape(p.app.id)}[/] ({escape(p.app.path)}): {p.change}")
            if p.error:
                console.print(f"  [red]render failed:[/] {escape(p.error)}")
            for d in p.diffs:
                console.print(f"  {d.change}: {escape(d.title)}")
                console.print(escape(d.diff), highlight=False)
            for d in (live or {}).get(p.app.id, []):
                console.print(f"  against the cluster, {d.change}: {escape(d.title)}")
                console.print(escape(d.diff), highlight=False)
