"""Container image references, parsed strictly, and the ``NAME=IMAGE[:TAG|@DIGEST]`` argument.

The grammar is the distribution project's reference grammar (what ``docker pull`` and
kustomize accept)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host [ ":" port ]          (a first part with "." or ":", or "localhost")
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 hex | "sha512:" 128 hex

A name is at most 255 characters. Anything else is refused with a message that says what is
wrong: these values end up in files, commit messages, argv lists and registry URL paths.

``ImageUpdate`` is the command's argument as ``kustomize edit set image`` reads it:
``NAME:TAG``, ``NAME@DIGEST``, ``NAME=NEWNAME``, ``NAME=NEWNAME:TAG``, ``NAME=NEWNAME@DIGEST``
(``NAME`` itself never carries a tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ImageRef", "ImageRefError", "ImageUpdate", "parse_image", "parse_update"]

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_HOST = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_DOMAIN = re.compile(rf"^(?:{_HOST}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_NAME_MAX = 255
DOCKER_HUB = "docker.io"


class ImageRefError(ValueError):
    """An image reference that does not follow the grammar (the message says why)."""


@dataclass(frozen=True)
class ImageRef:
    """``name`` (with its registry when it has one), ``tag`` and/or ``digest``."""

    name: str
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def domain(self) -> str:
        """The registry host[:port] written in the name, or "" (Docker Hub)."""
        first, sep, _ = self.name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return first
        return ""

    @property
    def registry(self) -> str:
        """The registry host[:port] to ask (Docker Hub when the name has none)."""
        return self.domain or DOCKER_HUB

    @property
    def repository(self) -> str:
        """The repository path within its registry (``library/`` added for Docker Hub)."""
        domain = self.domain
        path = self.name[len(domain) + 1 :] if domain else self.name
        if self.registry == DOCKER_HUB and "/" not in path:
            return f"library/{path}"
        return path

    @property
    def version(self) -> str:
        """The digest when there is one (it is what runs), else the tag."""
        return self.digest or self.tag


def _check_name(name: str, text: str) -> None:
    if not name:
        raise ImageRefError(f"{text!r}: no image name")
    if len(name) > _NAME_MAX:
        raise ImageRefError(f"{text!r}: an image name is at most {_NAME_MAX} characters")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.match(first):
            raise ImageRefError(f"{text!r}: {first!r} is not a registry host[:port]")
        path = rest
    else:
        path = name
    if not _PATH.match(path):
        raise ImageRefError(
            f"{text!r}: {path!r} is not a repository path (lower-case letters and digits, "
            "separated by '.', '_', '__' or '-', components joined by '/')"
        )


def parse_image(text: str, *, allow_tag: bool = True) -> ImageRef:
    """Parse ``name[:tag][@digest]``; ImageRefError naming the part that is wrong."""
    if text != text.strip() or not text:
        raise ImageRefError(f"{text!r}: an image reference has no surrounding whitespace")
    if text.startswith("-"):
        raise ImageRefError(f"{text!r}: an image reference cannot start with '-'")
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise ImageRefError(
            f"{text!r}: {digest!r} is not a digest (sha256: and 64 lower-case hex digits)"
        )
    name, tag = rest, ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageRefError(
                f"{text!r}: {tag!r} is not a tag (letters, digits, '_', '.', '-'; at most 128)"
            )
    _check_name(name, text)
    if not allow_tag and (tag or digest):
        raise ImageRefError(f"{text!r}: give the image name without a tag or digest here")
    return ImageRef(name=name, tag=tag, digest=digest)


@dataclass(frozen=True)
class ImageUpdate:
    """What to set for image ``name``: a new name, tag and/or digest (empty: unchanged)."""

    name: str
    new_name: str = ""
    tag: str = ""
    digest: str = ""

    @property
    def target(self) -> ImageRef:
        """The image that will run (the new name, or the old one)."""
        return ImageRef(self.new_name or self.name, self.tag, self.digest)

    def describe(self) -> str:
        return str(self.target)


def parse_update(text: str) -> ImageUpdate:
    """Parse ``NAME[=NEWNAME][:TAG|@DIGEST]`` (see the module docstring)."""
    name, eq, new = text.partition("=")
    if eq:
        old = parse_image(name, allow_tag=False)
        ref = parse_image(new)
        return ImageUpdate(
            name=old.name,
            new_name=ref.name if ref.name != old.name else "",
            tag=ref.tag,
            digest=ref.digest,
        )
    ref = parse_image(text)
    if not ref.tag and not ref.digest:
        raise ImageRefError(
            f"{text!r}: give a tag (NAME:TAG), a digest (NAME@sha256:..) or =NEWNAME"
        )
    return ImageUpdate(name=ref.name, tag=ref.tag, digest=ref.digest)
