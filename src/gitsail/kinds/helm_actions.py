"""Helm actions with the pinned ``helm`` binary: install, upgrade, test, rollback, uninstall.

Releases are made by Helm itself, so storage, hooks (weights, delete policies), tests and
rollbacks are Helm's own and ``helm list|history|get`` see everything gitsail did; gitsail
reads the storage back itself (``helm_storage``).

Each call is one ``helm`` process run by the render stage's ``ToolRunner`` (new session, a
scrubbed environment, an address-space limit, an output cap, and a deadline that kills the
whole group: the action's ``--timeout`` plus a margin for helm's own work). helm gets:

- a kubeconfig FILE written 0600 in a private 0700 directory made for the call and removed
  after it: the controller's credentials never reach argv, the environment or a log;
- private ``HELM_CACHE_HOME`` / ``HELM_CONFIG_HOME`` / ``HELM_DATA_HOME`` (no repositories,
  no registry logins, no plugins of the host);
- ``--kube-as-user=system:serviceaccount:<ns>:<sa>`` for a release with
  ``serviceAccountName`` (the API server adds the account's groups itself);
- every value checked against Helm's or Kubernetes' rules first, as ``--flag=value``, with
  the release name and chart after ``--``. Values go in a file (``--values=<file>``), never
  ``--set``.

A failed action is ``HelmActionError`` with helm's stderr (credentials redacted).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitsail.kinds import helm_postrender
from gitsail.kube import KubeConfig
from gitsail.policy import DEFAULT_POLICY, Policy
from gitsail.render import RenderError, ToolRunner, check_namespace, check_release_name
from gitsail.toolchain import find_binary

__all__ = ["HelmActionError", "HelmActions", "InstallRequest", "kubeconfig_document"]

_LABEL_VALUE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")
_PATH_SPECIAL = re.compile(r'[,"\x00-\x1f\x7f]')
_MARGIN = 30.0  # seconds beyond helm's --timeout before its process group is killed
_IDENTITY = re.compile(
    r"system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
)


class HelmActionError(Exception):
    """A helm action failed; the message is helm's error (never a credential)."""


@dataclass(frozen=True)
class InstallRequest:
    """What an install or upgrade needs besides the release's identity."""

    chart: Path  # the chart package (.tgz)
    values: Mapping[str, Any]
    timeout: float
    max_history: int
    wait: bool = True
    wait_for_jobs: bool = True
    disable_hooks: bool = False
    disable_openapi_validation: bool = False
    skip_schema_validation: bool = False
    take_ownership: bool = True
    crds: str = "Create"  # Skip | Create
    create_namespace: bool = False  # install only
    replace: bool = False  # install only
    force: bool = False  # upgrade only
    cleanup_on_fail: bool = False  # upgrade only
    description: str = ""
    redact: tuple[str, ...] = ()  # values from Secrets: never shown in an error
    owner: tuple[str, str] | None = None  # (name, namespace) of the HelmRelease: labels
    # postRenderers and commonMetadata for helm_postrender: {"steps", "labels", "annotations"}
    post_render: Mapping[str, Any] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def kubeconfig_document(config: KubeConfig) -> dict[str, Any]:
    """A kubeconfig with one context equivalent to ``config`` (credentials inline)."""
    cluster: dict[str, Any] = {"server": config.server}
    if config.ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(config.ca_data).decode()
    if config.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    if config.tls_server_name:
        cluster["tls-server-name"] = config.tls_server_name
    user: dict[str, Any] = {}
    if config.client_cert_data:
        user["client-certificate-data"] = base64.b64encode(config.client_cert_data).decode()
    elif config.client_cert_file:
        user["client-certificate"] = str(config.client_cert_file)
    if config.client_key_data:
        user["client-key-data"] = base64.b64encode(config.client_key_data).decode()
    elif config.client_key_file:
        user["client-key"] = str(config.client_key_file)
    if config.token:
        user["token"] = config.token
    elif config.token_file:
        user["tokenFile"] = str(config.token_file)
    if config.username is not None:
        user["username"] = config.username
        user["password"] = config.password or ""
    if config.exec is not None:
        user["exec"] = {
            "apiVersion": config.exec.api_version,
            "command": config.exec.command,
            "args": list(config.exec.args),
            "env": [{"name": k, "value": v} for k, v in config.exec.env] or None,
            "provideClusterInfo": config.exec.provide_cluster_info,
            "interactiveMode": "Never",
        }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "target", "cluster": cluster}],
        "users": [{"name": "gitsail", "user": user}],
        "contexts": [{"name": "target", "context": {"cluster": "target", "user": "gitsail"}}],
        "current-context": "target",
    }


class HelmActions:
    """Runs helm actions against one cluster (``config``) with ``runner``'s limits."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        work_dir: Path,
        policy: Policy = DEFAULT_POLICY,
        concurrency: int = 4,
        helm: Path | None = None,
        kustomize: Path | None = None,
    ) -> None:
        self.config = config
        self.work_dir = work_dir
        self.policy = policy
        self._helm = helm
        self._kustomize = kustomize
        self.runner = ToolRunner(home=work_dir / "home", concurrency=concurrency, policy=policy)
        self._secrets = tuple(s for s in (config.token, config.password) if s)

    def for_cluster(self, config: KubeConfig) -> HelmActions:
        """The same actions (runner, homes, limits) against another cluster: helm gets a
        private 0600 kubeconfig for ``config`` on every call, as it does for this one."""
        other = copy.copy(self)
        other.config = config
        other._secrets = tuple(s for s in (config.token, config.password) if s)
        return other

    @property
    def helm(self) -> str:
        if self._helm is None:
            self._helm = find_binary("helm")
        return str(self._helm)

    # -- the actions -----------------------------------------------------------------------

    async def install(
        self, name: str, namespace: str, request: InstallRequest, *, user: str | None = None
    ) -> None:
        """``helm install``: a new release (``replace``: over an uninstalled one)."""
        flags = self._release_flags(request)
        if request.create_namespace:
            flags.append("--create-namespace")
        if request.replace:
            flags.append("--replace")
        if request.crds == "Skip":
            flags.append("--skip-crds")
        await self._run_release("install", name, namespace, request, flags, user)

    async def upgrade(
        self, name: str, namespace: str, request: InstallRequest, *, user: str | None = None
    ) -> None:
        """``helm upgrade`` with exactly ``request.values`` (``--reset-values``)."""
        # helm install has no history limit: a release starts with one revision.
        flags = [
            *self._release_flags(request),
            "--reset-values",
            f"--history-max={request.max_history}",
        ]
        if request.force:
            flags.append("--force")
        if request.cleanup_on_fail:
            flags.append("--cleanup-on-fail")
        await self._run_release("upgrade", name, namespace, request, flags, user)

    async def test(
        self, name: str, namespace: str, *, helm_timeout: float, user: str | None = None
    ) -> None:
        argv = [
            "test",
            f"--namespace={self._namespace(namespace)}",
            f"--timeout={_duration(helm_timeout)}",
        ]
        await self._run(
            [*argv, "--", self._name(name)], helm_timeout=helm_timeout, user=user, what="test"
        )

    async def rollback(
        self,
        name: str,
        namespace: str,
        version: int,
        *,
        helm_timeout: float,
        max_history: int,
        wait: bool = True,
        wait_for_jobs: bool = True,
        disable_hooks: bool = False,
        force: bool = False,
        cleanup_on_fail: bool = False,
        user: str | None = None,
    ) -> None:
        """``helm rollback`` to ``version`` (0: the previous one)."""
        if version < 0:
            raise HelmActionError(f"invalid revision {version}")
        argv = [
            "rollback",
            f"--namespace={self._namespace(namespace)}",
            f"--timeout={_duration(helm_timeout)}",
            f"--history-max={max_history}",
        ]
        argv += [
            f
            for f, on in (
                ("--wait", wait),
                ("--wait-for-jobs", wait and wait_for_jobs),
                ("--no-hooks", disable_hooks),
                ("--force", force),
                ("--cleanup-on-fail", cleanup_on_fail),
            )
            if on
        ]
        await self._run(
            [*argv, "--", self._name(name), str(version)],
            helm_timeout=helm_timeout,
            user=user,
            what="rollback",
        )

    async def uninstall(
        self,
        name: str,
        namespace: str,
        *,
        helm_timeout: float,
        keep_history: bool = False,
        disable_hooks: bool = False,
        wait: bool = True,
        propagation: str = "background",
        user: str | None = None,
    ) -> None:
        if propagation not in ("background", "foreground", "orphan"):
            raise HelmActionError(f"invalid deletion propagation {propagation!r}")
        argv = [
            "uninstall",
            f"--namespace={self._namespace(namespace)}",
            f"--timeout={_duration(helm_timeout)}",
            f"--cascade={propagation}",
        ]
        argv += [
            f
            for f, on in (
                ("--keep-history", keep_history),
                ("--no-hooks", disable_hooks),
                ("--wait", wait),
            )
            if on
        ]
        await self._run(
            [*argv, "--", self._name(name)], helm_timeout=helm_timeout, user=user, what="uninstall"
        )

    # -- argv ------------------------------------------------------------------------------

    def _release_flags(self, request: InstallRequest) -> list[str]:
        if request.max_history < 0:
            raise HelmActionError(f"invalid history limit {request.max_history}")
        flags = [f"--timeout={_duration(request.timeout)}"]
        if request.wait:
            flags.append("--wait")
            if request.wait_for_jobs:
                flags.append("--wait-for-jobs")
        for flag, on in (
            ("--no-hooks", request.disable_hooks),
            ("--disable-openapi-validation", request.disable_openapi_validation),
            ("--skip-schema-validation", request.skip_schema_validation),
            ("--take-ownership", request.take_ownership),
        ):
            if on:
                flags.append(flag)
        if request.description:
            flags.append(f"--description={request.description}")
        return flags

    def _post_renderer(self, request: InstallRequest, private: Path) -> list[str]:
        """``helm_postrender`` as helm's post-renderer (its config in ``private``):
        ``postRenderers``, ``commonMetadata``, then the owner labels on every object."""
        if request.owner is None:
            return []
        name, namespace = request.owner
        if not _LABEL_VALUE.fullmatch(name) or not _LABEL_VALUE.fullmatch(namespace):
            raise HelmActionError(
                f"HelmRelease {namespace}/{name}: its name must be a valid label value "
                "(at most 63 characters) to label the objects of its release"
            )
        script = str(Path(helm_postrender.__file__).resolve())
        config_file = private / "post-render.json"
        for path in (sys.executable, script, str(config_file)):
            if _PATH_SPECIAL.search(path):
                raise HelmActionError(f"cannot give helm the path {path!r} (comma or quote)")
        config = {
            **request.post_render,
            "owner": {
                helm_postrender.NAME_LABEL: name,
                helm_postrender.NAMESPACE_LABEL: namespace,
            },
            "max_bytes": self.policy.render_output_bytes,
            "timeout": min(request.timeout, self.policy.render_timeout),
        }
        if config.get("steps"):
            config["kustomize"] = str(self._kustomize or find_binary("kustomize"))
        _write_private(config_file, json.dumps(config).encode())
        args = ["-I", script, str(config_file)]
        return [f"--post-renderer={sys.executable}"] + [f"--post-renderer-args={a}" for a in args]

    @staticmethod
    def _name(name: str) -> str:
        try:
            return check_release_name(name, "release name")
        except RenderError as exc:
            raise HelmActionError(str(exc)) from None

    @staticmethod
    def _namespace(namespace: str) -> str:
        try:
            return check_namespace(namespace, "namespace")
        except RenderError as exc:
            raise HelmActionError(str(exc)) from None

    async def _run_release(
        self,
        action: str,
        name: str,
        namespace: str,
        request: InstallRequest,
        flags: list[str],
        user: str | None,
    ) -> None:
        if not request.chart.is_file():
            raise HelmActionError(f"the chart package {request.chart.name} is missing")
        with self._private_dir() as private:
            values = private / "values.json"
            _write_private(values, json.dumps(request.values, default=str).encode())
            chart = private / "chart.tgz"
            shutil.copyfile(request.chart, chart)
            argv = [
                action,
                f"--namespace={self._namespace(namespace)}",
                f"--values={values}",
                *flags,
                *self._post_renderer(request, private),
                "--",
                self._name(name),
                str(chart),
            ]
            await self._run(
                argv,
                helm_timeout=request.timeout,
                user=user,
                what=action,
                private=private,
                redact=request.redact,
            )

    @contextmanager
    def _private_dir(self) -> Iterator[Path]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="helm-", dir=self.work_dir))
        path.chmod(0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    async def _run(
        self,
        argv: Sequence[str],
        *,
        helm_timeout: float,
        user: str | None,
        what: str,
        private: Path | None = None,
        redact: Sequence[str] = (),
    ) -> str:
        if user is not None and not _IDENTITY.fullmatch(user):
            raise HelmActionError(f"refusing to impersonate {user!r}: not a ServiceAccount")
        with self._private_dir() if private is None else _same(private) as where:
            kubeconfig = where / "kubeconfig"
            _write_private(kubeconfig, json.dumps(kubeconfig_document(self.config)).encode())
            home = where / "helm"
            env = {
                "HELM_CACHE_HOME": str(home / "cache"),
                "HELM_CONFIG_HOME": str(home / "config"),
                "HELM_DATA_HOME": str(home / "data"),
                "HELM_PLUGINS": str(home / "plugins"),
                "HELM_DRIVER": "secret",
            }
            full = [self.helm, *argv[:1], f"--kubeconfig={kubeconfig}"]
            if user is not None:
                full.append(f"--kube-as-user={user}")
            full += list(argv[1:])
            try:
                out = await self.runner.run(
                    full,
                    cwd=where,
                    what=f"helm {what}",
                    env=env,
                    secrets=(*self._secrets, *(s for s in redact if len(s) >= 4)),
                    time_limit=helm_timeout + _MARGIN,
                )
            except RenderError as exc:
                raise HelmActionError(_scrub(str(exc), where)) from None
            return out.decode("utf-8", "replace")


@contextmanager
def _same(path: Path) -> Iterator[Path]:
    yield path


def _scrub(text: str, private: Path) -> str:
    """helm's message without the private directory's random name (a stable status)."""
    return text.replace(str(private) + "/", "").replace(str(private), "<work dir>")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
