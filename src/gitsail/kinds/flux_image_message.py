"""The commit message of an ImageUpdateAutomation: ``git.commit.messageTemplate``.

The template is Go ``text/template`` (``gitsail.kinds.gotemplate``: fields, ``if``,
``range`` with ``$key, $value :=``, the Sprig functions it has) over the data Flux
documents for image-automation-controller v1:

- ``.AutomationObject``: ``namespace/name`` of the automation;
- ``.Changed.Changes``: every change, each ``{OldValue, NewValue, Setter}``;
- ``.Changed.FileChanges``: file -> object -> changes;
- ``.Changed.Objects``: object -> changes; an object is ``{Kind, Name, Namespace,
  APIVersion}``;
- ``.Values``: ``git.commit.messageTemplateValues``;
- the older ``.Updated`` (deprecated by Flux, still accepted): ``.Updated.Files`` (file ->
  ``{Objects: object -> [image]}``), ``.Updated.Objects`` (object -> [image]) and
  ``.Updated.Images`` ([image]); an image prints as ``name:tag``.

A template that does not parse or fails (an unknown function, ``missingkey``) is an error
the reconciler reports as Stalled (a spec change fixes it); the output is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gitsail.kinds.flux_image import ImageUpdateAutomation
from gitsail.kinds.flux_image_setters import SetterChange, SetterResult
from gitsail.kinds.gotemplate import GoTemplate

__all__ = ["DEFAULT_MESSAGE", "MAX_MESSAGE", "ObjectIdentifier", "render_message", "template_data"]

DEFAULT_MESSAGE = "Update from image update automation"
MAX_MESSAGE = 64 * 1024


class ObjectIdentifier(Mapping[str, str]):
    """A Kubernetes object named by a change: a hashable mapping, usable as a map key."""

    def __init__(self, kind: str, name: str, namespace: str, api_version: str) -> None:
        self._fields = {
            "Kind": kind,
            "Name": name,
            "Namespace": namespace,
            "APIVersion": api_version,
        }

    def __getitem__(self, key: str) -> str:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __hash__(self) -> int:
        return hash(tuple(self._fields.values()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectIdentifier) and other._fields == self._fields

    def __str__(self) -> str:
        f = self._fields
        return f"{f['Kind']} {f['Namespace'] + '/' if f['Namespace'] else ''}{f['Name']}"


def _identifier(change: SetterChange) -> ObjectIdentifier:
    return ObjectIdentifier(
        change.object_kind, change.object_name, change.object_namespace, change.object_api_version
    )


def template_data(auto: ImageUpdateAutomation, result: SetterResult) -> dict[str, Any]:
    """The data a message template sees (see the module docstring)."""
    changes = [{"OldValue": c.old, "NewValue": c.new, "Setter": c.setter} for c in result.changes]
    file_changes: dict[str, dict[ObjectIdentifier, list[dict[str, str]]]] = {}
    objects: dict[ObjectIdentifier, list[dict[str, str]]] = {}
    updated_files: dict[str, dict[str, dict[ObjectIdentifier, list[str]]]] = {}
    updated_objects: dict[ObjectIdentifier, list[str]] = {}
    images: list[str] = []
    for change, entry in zip(result.changes, changes, strict=True):
        ident = _identifier(change)
        file_changes.setdefault(change.file, {}).setdefault(ident, []).append(entry)
        objects.setdefault(ident, []).append(entry)
        # .Updated lists images; a ":tag" or ":name" setter changed a part of one.
        image = change.new
        per_file = updated_files.setdefault(change.file, {"Objects": {}})["Objects"]
        per_file.setdefault(ident, []).append(image)
        updated_objects.setdefault(ident, []).append(image)
        if image not in images:
            images.append(image)
    return {
        "AutomationObject": f"{auto.namespace}/{auto.name}",
        "Changed": {"Changes": changes, "FileChanges": file_changes, "Objects": objects},
        "Updated": {"Files": updated_files, "Objects": updated_objects, "Images": images},
        "Values": dict(auto.message_values),
    }


def render_message(template: str, auto: ImageUpdateAutomation, result: SetterResult) -> str:
    """The commit message; ``TemplateError`` when the template is not usable."""
    text = GoTemplate(template).render(template_data(auto, result), max_output=MAX_MESSAGE)
    return text if text.strip() else DEFAULT_MESSAGE
