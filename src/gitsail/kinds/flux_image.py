"""Flux's image automation API (``image.toolkit.fluxcd.io/v1``): parse specs, choose a tag.

Three kinds, as Flux documents them (image-reflector-controller and
image-automation-controller ``docs/spec/v1``):

- ``ImageRepository``: ``spec.image`` (required; a repository without tag or digest),
  ``interval`` (required), ``timeout``, ``secretRef`` (a docker-config Secret), ``insecure``,
  ``exclusionList`` (regular expressions of tags to leave out; default ``^.*\\.sig$``, at most
  25), ``suspend``, ``provider`` (only ``generic``).
- ``ImagePolicy``: ``imageRepositoryRef`` (required), exactly one of ``policy.semver.range``,
  ``policy.alphabetical.order`` and ``policy.numerical.order`` (``asc``, the default, chooses
  the last tag in ascending order, i.e. the highest; ``desc`` the lowest), ``filterTags``
  (``pattern``: a regular expression a tag must match; ``extract``: the value to order by,
  from the pattern's groups — ``$1``, ``$name``, ``${name}``).
- ``ImageUpdateAutomation``: ``sourceRef`` (a GitRepository), ``git.checkout.ref``,
  ``git.commit.author`` (required name and email), ``git.commit.messageTemplate``,
  ``git.push.branch``, ``update.path`` and ``update.strategy`` (``Setters``), ``interval``,
  ``policySelector`` (labels), ``suspend``.

``select_tag(policy, tags)`` is the policy's choice among a repository's tags (None when
no tag qualifies). Patterns are Python regular expressions; the RE2 syntax Flux documents
is a subset for what users write (named groups ``(?P<name>..)``). A pattern's length and a
tag list's size are bounded (``MAX_PATTERN``, ``MAX_TAGS``): a tenant's regular expression
runs in the controller.

A semver range is checked when parsed (a version alone is ``= version``, as Masterminds
reads it). The reconcilers are in ``flux_image_reconciler``.

Refused with a message (not implemented): ``verify``, ``certSecretRef``, ``proxySecretRef``,
``serviceAccountName``, ``digestReflectionPolicy`` other than ``Never``, commit signing keys,
``push.refspec``, and ``update.strategy`` other than ``Setters``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gitsail.kinds._fields import Fields, object_fields, shown
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.source.semver import is_semver_constraint, parse_version, resolve_semver

__all__ = [
    "API_VERSIONS",
    "GROUP",
    "ImagePolicy",
    "ImageRepository",
    "ImageUpdateAutomation",
    "parse_image_policy",
    "parse_image_repository",
    "parse_image_update_automation",
    "select_tag",
]

GROUP = "image.toolkit.fluxcd.io"
API_VERSIONS = (f"{GROUP}/v1", f"{GROUP}/v1beta2")
DEFAULT_EXCLUSIONS = (r"^.*\.sig$",)
MAX_EXCLUSIONS = 25
MAX_PATTERN = 1024
MAX_TAGS = 50_000
_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_BRANCH = r"[^\s~^:?*\[\\]{1,250}"


@dataclass(frozen=True)
class ImageRepository:
    namespace: str
    name: str
    generation: int
    image: str
    interval: float
    timeout: float
    secret_ref: str | None
    insecure: bool
    exclusions: tuple[str, ...]
    suspend: bool

    def keep(self, tags: Iterable[str]) -> list[str]:
        """The tags not excluded by ``exclusionList``."""
        patterns = [re.compile(p) for p in self.exclusions]
        return [t for t in tags if not any(p.search(t) for p in patterns)]


@dataclass(frozen=True)
class ImagePolicy:
    namespace: str
    name: str
    generation: int
    repository_name: str
    repository_namespace: str
    kind: str  # "semver" | "alphabetical" | "numerical"
    semver_range: str = ""
    order: str = "asc"
    filter_pattern: str = ""
    filter_extract: str = ""


@dataclass(frozen=True)
class ImageUpdateAutomation:
    namespace: str
    name: str
    generation: int
    source_name: str
    source_namespace: str
    checkout_branch: str  # "" = the GitRepository's own ref
    author_name: str
    author_email: str
    message_template: str
    push_branch: str  # "" = the checkout branch
    update_path: str
    interval: float
    policy_selector: tuple[tuple[str, str], ...]
    suspend: bool
    message_values: tuple[tuple[str, str], ...] = ()


def _check_pattern(spec: Fields, name: str, value: str) -> str:
    if len(value) > MAX_PATTERN:
        raise SpecError(spec.at(name), f"longer than {MAX_PATTERN} characters")
    try:
        re.compile(value)
    except re.error as exc:
        raise SpecError(spec.at(name), f"not a regular expression: {exc}") from None
    return value


def _refuse(spec: Fields, fields: tuple[tuple[str, str], ...]) -> None:
    for field, why in fields:
        if spec.present(field):
            spec.raw(field)
            raise UnsupportedField(spec.at(field), why)


def parse_image_repository(obj: Any) -> ImageRepository:
    subject, namespace, name, generation, spec = object_fields(
        obj, kind="ImageRepository", api_versions=API_VERSIONS
    )
    try:
        _refuse(
            spec,
            (
                ("certSecretRef", "custom CAs are not implemented by gitsail yet"),
                ("proxySecretRef", "proxies are not implemented by gitsail yet"),
                ("serviceAccountName", "ServiceAccount pull secrets are not read yet"),
            ),
        )
        image = spec.need_string("image")
        if "://" in image or not _IMAGE.match(image) or len(image) > 255:
            raise SpecError(spec.at("image"), f"not an image repository: {shown(image)}")
        interval = spec.need_duration("interval")
        timeout = spec.duration("timeout")
        secret = spec.obj("secretRef")
        secret_name = secret.string("name", required=spec.present("secretRef"))
        secret.finish()
        exclusions = spec.strings("exclusionList") if spec.present("exclusionList") else None
        if exclusions is not None and len(exclusions) > MAX_EXCLUSIONS:
            raise SpecError(spec.at("exclusionList"), f"at most {MAX_EXCLUSIONS} entries")
        for i, pattern in enumerate(exclusions or ()):
            _check_pattern(spec, f"exclusionList[{i}]", pattern)
        provider = spec.choice("provider", ("generic", "aws", "azure", "gcp"), "generic")
        if provider != "generic":
            raise UnsupportedField(spec.at("provider"), "only provider generic is implemented")
        insecure = spec.boolean("insecure")
        suspend = spec.boolean("suspend")
        spec.raw("accessFrom")  # read by the ImagePolicy reconciler (cross-namespace refs)
        spec.finish()
    except SpecError as exc:
        raise exc.about(subject) from None
    return ImageRepository(
        namespace=namespace,
        name=name,
        generation=generation,
        image=image,
        interval=interval,
        timeout=60.0 if timeout is None else timeout,
        secret_ref=secret_name or None,
        insecure=insecure,
        exclusions=DEFAULT_EXCLUSIONS if exclusions is None else exclusions,
        suspend=suspend,
    )


def parse_image_policy(obj: Any) -> ImagePolicy:
    subject, namespace, name, generation, spec = object_fields(
        obj, kind="ImagePolicy", api_versions=API_VERSIONS
    )
    try:
        ref = spec.obj("imageRepositoryRef")
        if not spec.present("imageRepositoryRef"):
            raise SpecError(spec.at("imageRepositoryRef"), "required")
        repo_name = ref.need_string("name")
        repo_namespace = ref.string("namespace") or namespace
        ref.finish()
        policy = spec.obj("policy")
        chosen = [k for k in ("semver", "alphabetical", "numerical") if policy.present(k)]
        if len(chosen) != 1:
            raise SpecError(
                spec.at("policy"), "exactly one of semver, alphabetical, numerical is required"
            )
        kind = chosen[0]
        block = policy.obj(kind)
        semver_range, order = "", "asc"
        if kind == "semver":
            semver_range = block.need_string("range").strip()
            if parse_version(semver_range) is not None:
                semver_range = f"={semver_range}"  # Masterminds: a version is "= version"
            if len(semver_range) > MAX_PATTERN or not is_semver_constraint(semver_range):
                raise SpecError(block.at("range"), f"not a semver range: {shown(semver_range)}")
        else:
            order = block.choice("order", ("asc", "desc"), "asc")
        block.finish()
        policy.finish()
        tags = spec.obj("filterTags")
        pattern = _check_pattern(tags, "pattern", tags.string("pattern") or "")
        extract = tags.string("extract") or ""
        tags.finish()
        reflect = spec.choice(
            "digestReflectionPolicy", ("Never", "IfNotPresent", "Always"), "Never"
        )
        if reflect != "Never":
            raise UnsupportedField(
                spec.at("digestReflectionPolicy"), "digest reflection is not implemented yet"
            )
        spec.duration("interval")
        spec.finish()
    except SpecError as exc:
        raise exc.about(subject) from None
    return ImagePolicy(
        namespace=namespace,
        name=name,
        generation=generation,
        repository_name=repo_name,
        repository_namespace=repo_namespace,
        kind=kind,
        semver_range=semver_range,
        order=order,
        filter_pattern=pattern,
        filter_extract=extract,
    )


def parse_image_update_automation(obj: Any) -> ImageUpdateAutomation:
    subject, namespace, name, generation, spec = object_fields(
        obj, kind="ImageUpdateAutomation", api_versions=API_VERSIONS
    )
    try:
        source = spec.obj("sourceRef")
        if not spec.present("sourceRef"):
            raise SpecError(spec.at("sourceRef"), "required")
        source.choice("kind", ("GitRepository",), "GitRepository")
        source.string("apiVersion")
        source_name = source.need_string("name")
        source_namespace = source.string("namespace") or namespace
        source.finish()
        git = spec.obj("git")
        checkout = git.obj("checkout")
        checkout_ref = checkout.obj("ref")
        branch = checkout_ref.string("branch", pattern=_BRANCH) or ""
        for other in ("tag", "semver", "name", "commit"):
            if checkout_ref.present(other):
                checkout_ref.raw(other)
                raise UnsupportedField(checkout_ref.at(other), "check out a branch to push to")
        checkout_ref.finish()
        checkout.finish()
        commit = git.obj("commit")
        author = commit.obj("author")
        if not commit.present("author"):
            raise SpecError(commit.at("author"), "required")
        author_name = author.need_string("name")
        author_email = author.need_string("email")
        author.finish()
        template = commit.string("messageTemplate") or ""
        values = commit.string_map("messageTemplateValues")
        _refuse(commit, (("signingKey", "signed commits are not implemented by gitsail yet"),))
        commit.finish()
        push = git.obj("push")
        push_branch = push.string("branch", pattern=_BRANCH) or ""
        _refuse(push, (("refspec", "push refspecs are not implemented by gitsail yet"),))
        push.string_map("options")
        push.finish()
        git.finish()
        update = spec.obj("update")
        update.choice("strategy", ("Setters",), "Setters")
        path = (update.string("path") or "./").strip()
        if path.startswith("/") or ".." in path.split("/"):
            raise SpecError(update.at("path"), f"must stay inside the repository: {shown(path)}")
        update.finish()
        interval = spec.need_duration("interval")
        selector = spec.obj("policySelector")
        labels = selector.string_map("matchLabels")
        if selector.present("matchExpressions"):
            selector.raw("matchExpressions")
            raise UnsupportedField(selector.at("matchExpressions"), "use matchLabels")
        selector.finish()
        suspend = spec.boolean("suspend")
        spec.finish()
    except SpecError as exc:
        raise exc.about(subject) from None
    return ImageUpdateAutomation(
        namespace=namespace,
        name=name,
        generation=generation,
        source_name=source_name,
        source_namespace=source_namespace,
        checkout_branch=branch,
        author_name=author_name,
        author_email=author_email,
        message_template=template,
        push_branch=push_branch,
        update_path=path.removeprefix("./").strip("/") or ".",
        interval=interval,
        policy_selector=labels,
        suspend=suspend,
        message_values=values,
    )


_GROUP_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _extract(template: str, match: re.Match[str]) -> str:
    def one(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        try:
            value = match.group(int(key)) if key.isdigit() else match.group(key)
        except IndexError:  # no such group
            return ""
        return value or ""

    return _GROUP_REF.sub(one, template)


def select_tag(policy: ImagePolicy, tags: Iterable[str]) -> str | None:
    """The tag ``policy`` chooses among ``tags`` (None when none qualifies)."""
    candidates: list[tuple[str, str]] = []  # (value to order by, tag)
    pattern = re.compile(policy.filter_pattern) if policy.filter_pattern else None
    for count, tag in enumerate(tags):
        if count >= MAX_TAGS:
            break
        if pattern is None:
            candidates.append((tag, tag))
            continue
        match = pattern.search(tag)
        if match is None:
            continue
        value = _extract(policy.filter_extract, match) if policy.filter_extract else tag
        candidates.append((value, tag))
    if not candidates:
        return None
    if policy.kind == "semver":
        by_value = {value: tag for value, tag in candidates if parse_version(value) is not None}
        best = resolve_semver(policy.semver_range, by_value)
        return by_value[best] if best is not None else None
    if policy.kind == "numerical":
        numbers: list[tuple[float, str]] = []
        for value, tag in candidates:
            try:
                numbers.append((float(value), tag))
            except ValueError:
                continue  # not a number: not a candidate
        if not numbers:
            return None
        numbers.sort()
        return numbers[-1][1] if policy.order == "asc" else numbers[0][1]
    ordered = sorted(candidates)
    return ordered[-1][1] if policy.order == "asc" else ordered[0][1]
