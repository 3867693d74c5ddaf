"""Flux's ``GitRepository`` (``source.toolkit.fluxcd.io/v1``, and the deprecated ``v1beta2``
served with the same schema): parse a spec into a kind-neutral ``SourceRef``.

Flux's rules, as its documentation states them (source-controller
``docs/spec/v1/gitrepositories.md``):

- ``spec.url`` (required) is an ``http(s)://`` or ``ssh://`` URL; the scp-like
  ``git@host:path`` is not accepted. gitsail also accepts ``file://``, which its source stage
  allows only where the operator's policy does (``allow_file_urls``).
- ``spec.ref``: of ``branch``, ``tag``, ``semver``, ``name`` and ``commit``, the later one
  wins (commit > name > semver > tag > branch); ``commit`` with ``branch`` checks the commit
  out of that branch. No reference at all means the ``master`` branch.
- ``spec.interval`` (required) and ``spec.timeout`` (default 60s) are Go durations.
- ``spec.secretRef.name``: a Secret in the same namespace (``username``/``password``,
  ``bearerToken``, or SSH ``identity`` + ``known_hosts``).
- ``spec.ignore`` (``.gitignore`` rules, replacing the default exclusions), ``spec.include``
  (``toPath`` defaults to the included repository's name), ``spec.suspend``.

Refused with a message (not implemented yet): ``verify``, ``recurseSubmodules: true``,
``provider`` other than ``generic``, ``proxySecretRef``, ``sparseCheckout``,
``serviceAccountName``, and ``v1beta2``'s ``accessFrom``. ``v1beta2``'s ``gitImplementation``
is accepted and has no effect, as in Flux itself since it became deprecated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitsail.kinds._fields import Fields, annotation, object_fields, shown
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.records import Include, RefKind, RevisionRef, SourceRef

__all__ = [
    "API_VERSIONS",
    "DEFAULT_BRANCH",
    "DEFAULT_TIMEOUT",
    "GROUP",
    "KIND",
    "GitRepository",
    "parse_git_repository",
]

GROUP = "source.toolkit.fluxcd.io"
KIND = "GitRepository"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta2")
DEFAULT_BRANCH = "master"
DEFAULT_TIMEOUT = 60.0
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"

_URL = r"(https?|ssh|file)://.+"
# A ref is passed to git: never an option, never a control character or a space.
_REF = r"[^-\s\x00-\x1f\x7f~^:?*\[\\][^\s\x00-\x1f\x7f~^:?*\[\\]*"
_COMMIT = r"[0-9a-f]{40}|[0-9a-f]{64}"


@dataclass(frozen=True)
class GitRepository:
    """A parsed GitRepository: its identity and the source it describes."""

    namespace: str
    name: str
    generation: int
    source: SourceRef
    requested_at: str | None = None  # reconcile.fluxcd.io/requestedAt, to detect a new request


def parse_git_repository(obj: Any) -> GitRepository:
    """Parse a GitRepository object; raises ``SpecError`` (``UnsupportedField``) naming the
    field and the object, and nothing else, whatever the input."""
    subject, namespace, name, generation, spec = object_fields(
        obj, kind=KIND, api_versions=API_VERSIONS
    )
    try:
        source = _source(spec)
    except SpecError as exc:
        raise exc.about(subject) from None
    return GitRepository(
        namespace=namespace,
        name=name,
        generation=generation,
        source=source,
        requested_at=annotation(obj, REQUESTED_AT),
    )


def _source(spec: Fields) -> SourceRef:
    _refuse_unsupported(spec)
    url = spec.need_string("url", pattern=_URL)
    interval = spec.need_duration("interval")
    timeout = spec.duration("timeout")
    secret = spec.obj("secretRef")
    secret_name = secret.string("name", required=spec.present("secretRef"))
    secret.finish()
    ref = _revision(spec.obj("ref"))
    ignore = spec.string("ignore")
    include = tuple(_include(item) for item in spec.items("include"))
    suspend = spec.boolean("suspend")
    spec.string("gitImplementation")  # deprecated in v1beta2; no effect in Flux either
    spec.finish()
    return SourceRef(
        kind=KIND,
        url=url,
        ref=ref,
        secret_ref=secret_name or None,
        interval=interval,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        ignore=ignore,
        include=include,
        suspend=suspend,
    )


def _revision(ref: Fields) -> RevisionRef:
    branch = ref.string("branch", pattern=_REF) or None
    tag = ref.string("tag", pattern=_REF) or None
    semver = ref.string("semver") or None
    name = ref.string("name", pattern=r"refs/" + _REF) or None
    commit = ref.string("commit", pattern=_COMMIT) or None
    ref.finish()
    if semver is not None and len(semver) > 256:
        raise SpecError(ref.at("semver"), f"too long: {shown(semver)}")
    if commit is not None:
        return RevisionRef(RefKind.COMMIT, commit, branch=branch)
    if name is not None:
        return RevisionRef(RefKind.NAME, name)
    if semver is not None:
        return RevisionRef(RefKind.SEMVER, semver)
    if tag is not None:
        return RevisionRef(RefKind.TAG, tag)
    return RevisionRef(RefKind.BRANCH, branch or DEFAULT_BRANCH)


def _include(item: Fields) -> Include:
    repository = item.obj("repository")
    name = repository.need_string("name")
    repository.finish()
    from_path = item.string("fromPath") or ""
    to_path = item.string("toPath") or name
    item.finish()
    for field, path in (("fromPath", from_path), ("toPath", to_path)):
        parts = path.replace("\\", "/").split("/")
        if ".." in parts or path.startswith("/"):
            raise SpecError(item.at(field), f"must stay inside the artifact, got {shown(path)}")
    return Include(repository=name, from_path=from_path, to_path=to_path)


def _refuse_unsupported(spec: Fields) -> None:
    for field, why in (
        ("verify", "commit signature verification is not implemented by gitsail yet"),
        ("proxySecretRef", "proxies are not implemented by gitsail yet"),
        ("serviceAccountName", "workload identity for Git is not implemented by gitsail yet"),
        ("accessFrom", "cross-namespace access lists (v1beta2) are not implemented by gitsail"),
    ):
        if spec.present(field):
            spec.raw(field)
            raise UnsupportedField(spec.at(field), why)
    if spec.boolean("recurseSubmodules"):
        raise UnsupportedField(
            spec.at("recurseSubmodules"), "submodules are not implemented by gitsail yet"
        )
    if spec.strings("sparseCheckout"):
        raise UnsupportedField(
            spec.at("sparseCheckout"), "sparse checkout is not implemented by gitsail yet"
        )
    provider = spec.choice("provider", ("generic", "azure", "github"), "generic")
    if provider != "generic":
        raise UnsupportedField(
            spec.at("provider"),
            f"provider {provider} is not implemented by gitsail yet (use generic)",
        )
