"""The Application spec's schema, as Argo CD's CRD (``manifests/crds/application-crd.yaml``)
declares it, and a checker that walks a spec against it.

gitsail installs the Application CRD with ``x-kubernetes-preserve-unknown-fields``, so the
apiserver stores whatever a tenant writes. Argo CD's own CRD would have refused a string
``revisionHistoryLimit`` or a list ``syncPolicy`` at admission; here ``check`` refuses them
before the engine reads a field, with the field's path (``spec.syncPolicy.retry.limit:
expected integer, got "x"``). The ``operation`` a client writes to request a sync is
checked the same way (Argo CD's CRD covers it too).

The schema is data: ``Scalar`` (string, boolean, integer with int64 range, int-or-string),
``Fields`` (an object with known fields, some required), ``MapOf`` (an object whose values
share a type: labels, annotations), ``ListOf`` and ``ANY_OBJECT`` (an object kept as it is:
``helm.valuesObject``). As the apiserver does for a structural schema, a ``null`` field is
treated as absent and unknown fields are ignored (Argo CD's CRD prunes them). The walk
follows the schema, never the value, so its depth is the schema's (a few levels) whatever
the input; it stops after ``MAX_PROBLEMS`` problems.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "APPLICATION",
    "MAX_PROBLEMS",
    "OPERATION",
    "SOURCE",
    "SYNC_RETRY",
    "AnyObject",
    "Fields",
    "ListOf",
    "MapOf",
    "Problems",
    "Scalar",
    "Schema",
    "check",
    "shown",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Scalar:
    type: str  # "string" | "boolean" | "integer" | "int-or-string"
    minimum: int | None = None  # for integers: a range Argo CD relies on (see its users)


@dataclass(frozen=True)
class ListOf:
    items: Schema


@dataclass(frozen=True)
class MapOf:
    values: Schema


@dataclass(frozen=True)
class Fields:
    fields: Mapping[str, Schema]
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnyObject:
    pass


Schema = Scalar | ListOf | MapOf | Fields | AnyObject

STRING = Scalar("string")
BOOLEAN = Scalar("boolean")
INTEGER = Scalar("integer")
INT_OR_STRING = Scalar("int-or-string")
ANY_OBJECT = AnyObject()
STRINGS = ListOf(STRING)
STRING_MAP = MapOf(STRING)


def _fields(required: tuple[str, ...] = (), **fields: Schema) -> Fields:
    return Fields(fields, required)


_JSONNET_VAR = _fields(("name", "value"), code=BOOLEAN, name=STRING, value=STRING)

SOURCE = _fields(
    ("repoURL",),
    chart=STRING,
    directory=_fields(
        exclude=STRING,
        include=STRING,
        jsonnet=_fields(extVars=ListOf(_JSONNET_VAR), libs=STRINGS, tlas=ListOf(_JSONNET_VAR)),
        recurse=BOOLEAN,
    ),
    helm=_fields(
        apiVersions=STRINGS,
        fileParameters=ListOf(_fields(name=STRING, path=STRING)),
        ignoreMissingValueFiles=BOOLEAN,
        kubeVersion=STRING,
        namespace=STRING,
        parameters=ListOf(_fields(forceString=BOOLEAN, name=STRING, value=STRING)),
        passCredentials=BOOLEAN,
        releaseName=STRING,
        skipCrds=BOOLEAN,
        skipSchemaValidation=BOOLEAN,
        skipTests=BOOLEAN,
        valueFiles=STRINGS,
        values=STRING,
        valuesObject=ANY_OBJECT,
        version=STRING,
    ),
    kustomize=_fields(
        apiVersions=STRINGS,
        commonAnnotations=STRING_MAP,
        commonAnnotationsEnvsubst=BOOLEAN,
        commonLabels=STRING_MAP,
        components=STRINGS,
        forceCommonAnnotations=BOOLEAN,
        forceCommonLabels=BOOLEAN,
        ignoreMissingComponents=BOOLEAN,
        images=STRINGS,
        kubeVersion=STRING,
        labelIncludeTemplates=BOOLEAN,
        labelWithoutSelector=BOOLEAN,
        namePrefix=STRING,
        nameSuffix=STRING,
        namespace=STRING,
        patches=ListOf(
            _fields(
                options=MapOf(BOOLEAN),
                patch=STRING,
                path=STRING,
                target=_fields(
                    annotationSelector=STRING,
                    group=STRING,
                    kind=STRING,
                    labelSelector=STRING,
                    name=STRING,
                    namespace=STRING,
                    version=STRING,
                ),
            )
        ),
        replicas=ListOf(_fields(("count", "name"), count=INT_OR_STRING, name=STRING)),
        version=STRING,
    ),
    name=STRING,
    path=STRING,
    plugin=_fields(
        env=ListOf(_fields(("name", "value"), name=STRING, value=STRING)),
        name=STRING,
        parameters=ListOf(
            _fields(array=STRINGS, map=STRING_MAP, name=STRING, string=STRING),
        ),
    ),
    ref=STRING,
    repoURL=STRING,
    targetRevision=STRING,
)

# A factor below 1 would shrink the delay between retries (to none at 0): refused, so a
# failing sync can never retry in a tight loop. Durations are checked by ``parse_duration``.
SYNC_RETRY = _fields(
    backoff=_fields(duration=STRING, factor=Scalar("integer", minimum=1), maxDuration=STRING),
    limit=INTEGER,  # < 0: unlimited (Argo CD's documented meaning)
    refresh=BOOLEAN,
)

# ``operation``: a sync requested by a client (argocd CLI, UI, kubectl patch) or by us.
OPERATION = _fields(
    info=ListOf(_fields(("name", "value"), name=STRING, value=STRING)),
    initiatedBy=_fields(automated=BOOLEAN, username=STRING),
    retry=SYNC_RETRY,
    sync=_fields(
        autoHealAttemptsCount=INTEGER,
        selfHealAttemptsCount=INTEGER,
        dryRun=BOOLEAN,
        manifests=STRINGS,
        prune=BOOLEAN,
        resources=ListOf(
            _fields(("kind", "name"), group=STRING, kind=STRING, name=STRING, namespace=STRING)
        ),
        revision=STRING,
        revisions=STRINGS,
        source=SOURCE,
        sources=ListOf(SOURCE),
        syncOptions=STRINGS,
        syncStrategy=_fields(apply=_fields(force=BOOLEAN), hook=_fields(force=BOOLEAN)),
    ),
)

APPLICATION = _fields(
    ("metadata", "spec"),
    operation=OPERATION,
    metadata=_fields(
        ("name",),
        name=STRING,
        namespace=STRING,
        finalizers=STRINGS,
        labels=STRING_MAP,
        annotations=STRING_MAP,
    ),
    spec=_fields(
        destination=_fields(name=STRING, namespace=STRING, server=STRING),
        ignoreDifferences=ListOf(
            _fields(
                ("kind",),
                group=STRING,
                jqPathExpressions=STRINGS,
                jsonPointers=STRINGS,
                kind=STRING,
                managedFieldsManagers=STRINGS,
                name=STRING,
                namespace=STRING,
            )
        ),
        info=ListOf(_fields(("name", "value"), name=STRING, value=STRING)),
        project=STRING,
        # Argo CD slices its history with this number: a negative one is meaningless.
        revisionHistoryLimit=Scalar("integer", minimum=0),
        source=SOURCE,
        sourceHydrator=ANY_OBJECT,
        sources=ListOf(SOURCE),
        syncPolicy=_fields(
            automated=_fields(allowEmpty=BOOLEAN, enabled=BOOLEAN, prune=BOOLEAN, selfHeal=BOOLEAN),
            managedNamespaceMetadata=_fields(annotations=STRING_MAP, labels=STRING_MAP),
            retry=SYNC_RETRY,
            syncOptions=STRINGS,
        ),
    ),
)


@dataclass
class Problems:
    """What a walk found, in document order; full after ``MAX_PROBLEMS``."""

    found: list[str] = field(default_factory=list)

    def add(self, path: str, problem: str) -> None:
        if len(self.found) < MAX_PROBLEMS:
            self.found.append(f"{path}: {problem}")

    def full(self) -> bool:
        return len(self.found) >= MAX_PROBLEMS


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _child(path: str, key: str) -> str:
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key[:80])}]"


def shown(value: Any) -> str:
    """A value as the error shows it: JSON for scalars (strings cut short), a type name else."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value[:60] + ("…" if len(value) > 60 else ""), ensure_ascii=False)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else "a huge integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        # JSON has one number type: 3.0 is the integer 3, as the apiserver reads it.
        return value.is_integer()
    return isinstance(value, int)


def _scalar(value: Any, schema: Scalar, path: str, problems: Problems) -> None:
    kind = schema.type
    if kind == "string":
        if not isinstance(value, str):
            problems.add(path, f"expected string, got {shown(value)}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.add(path, f"expected boolean, got {shown(value)}")
    elif kind == "int-or-string":
        if not isinstance(value, str) and not _is_integer(value):
            problems.add(path, f"expected integer or string, got {shown(value)}")
    elif not _is_integer(value):
        problems.add(path, f"expected integer, got {shown(value)}")
    elif not INT64_MIN <= value <= INT64_MAX:
        problems.add(path, f"{shown(value)} is out of range (a 64-bit integer)")
    elif schema.minimum is not None and value < schema.minimum:
        problems.add(path, f"must be at least {schema.minimum}, got {shown(value)}")


def walk(value: Any, schema: Schema, path: str, problems: Problems) -> None:
    """Record every way ``value`` (never None here) differs from ``schema``."""
    if problems.full():
        return
    if isinstance(schema, Scalar):
        _scalar(value, schema, path, problems)
        return
    if isinstance(schema, ListOf):
        if not isinstance(value, list | tuple):
            problems.add(path, f"expected array, got {shown(value)}")
            return
        for i, item in enumerate(value):
            if problems.full():
                return
            if item is None:
                problems.add(f"{path}[{i}]", "must not be null")
            else:
                walk(item, schema.items, f"{path}[{i}]", problems)
        return
    if not isinstance(value, Mapping):
        problems.add(path, f"expected object, got {shown(value)}")
        return
    for key in value:
        if not isinstance(key, str):
            problems.add(path, f"keys must be strings, got {shown(key)}")
            return
    if isinstance(schema, AnyObject):
        return
    if isinstance(schema, MapOf):
        for key, item in value.items():
            if problems.full():
                return
            if item is None:
                problems.add(_child(path, key), "must not be null")
            else:
                walk(item, schema.values, _child(path, key), problems)
        return
    for key in schema.required:
        if value.get(key) is None:
            problems.add(_child(path, key), "is required")
    for key, sub in schema.fields.items():
        item = value.get(key)
        if item is not None:
            walk(item, sub, _child(path, key), problems)


def check(value: Any, schema: Schema, path: str) -> list[str]:
    """The problems of ``value`` against ``schema`` (at most ``MAX_PROBLEMS``); [] when fine."""
    problems = Problems()
    if value is None:
        return []
    walk(value, schema, path, problems)
    return problems.found
