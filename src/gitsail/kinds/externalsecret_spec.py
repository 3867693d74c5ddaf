"""An ``ExternalSecret`` spec (``external-secrets.io/v1``, ``v1beta1``) read into records.

ESO's defaults are applied here, when gitsail reads the object, not by the CRD (which
declares none): ``refreshInterval`` 1h, ``refreshPolicy`` Periodic, ``secretStoreRef.kind``
SecretStore, ``target.name`` the object's name, ``creationPolicy`` Owner, ``deletionPolicy``
Retain, template ``engineVersion`` v2 and ``mergePolicy`` Replace, strategies Default/None.
So the stored object is what Git holds and no Argo CD or Flux diff flaps on a default.

Fields gitsail does not implement (``syncWindows``, ``sourceRef``/``generatorRef``,
``target.manifest``, ``templateFrom``, ``rewrite.merge``, ``CreateOrMerge``) are refused by
path (``SpecError``), never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitsail.kinds._fields import Fields, object_fields
from gitsail.kinds.errors import SpecError
from gitsail.secrets.external.provider import Find

__all__ = [
    "API_VERSIONS",
    "DataFrom",
    "DataItem",
    "ExternalSecretSpec",
    "RemoteRef",
    "Rewrite",
    "TemplateSpec",
    "parse_external_secret",
]

API_VERSIONS = ("external-secrets.io/v1", "external-secrets.io/v1beta1")
DEFAULT_REFRESH = 3600.0
_KEY = r"[-._a-zA-Z0-9]+"
DECODINGS = ("None", "Base64", "Base64URL", "Auto")
CONVERSIONS = ("Default", "Unicode")


@dataclass(frozen=True)
class RemoteRef:
    key: str
    property: str = ""
    version: str = ""
    metadata: bool = False  # metadataPolicy: Fetch
    conversion: str = "Default"
    decoding: str = "None"


@dataclass(frozen=True)
class DataItem:
    secret_key: str
    ref: RemoteRef


@dataclass(frozen=True)
class Rewrite:
    source: str = ""  # regexp
    target: str = ""
    template: str = ""  # transform


@dataclass(frozen=True)
class DataFrom:
    extract: RemoteRef | None
    find: Find | None
    conversion: str
    decoding: str
    rewrite: tuple[Rewrite, ...]


@dataclass(frozen=True)
class TemplateSpec:
    type: str
    merge_policy: str  # Replace | Merge
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ExternalSecretSpec:
    namespace: str
    name: str
    generation: int
    store_name: str
    store_kind: str
    refresh_interval: float
    refresh_policy: str
    target_name: str
    creation: str
    deletion: str
    immutable: bool
    template: TemplateSpec | None
    data: tuple[DataItem, ...]
    data_from: tuple[DataFrom, ...]


def _ref(f: Fields, *, extract: bool = False) -> RemoteRef:
    ref = RemoteRef(
        key=f.need_string("key"),
        property=f.string("property") or "",
        version=f.string("version") or "",
        metadata=f.choice("metadataPolicy", ("None", "Fetch"), "None") == "Fetch",
        conversion=f.choice("conversionStrategy", CONVERSIONS, "Default"),
        decoding=f.choice("decodingStrategy", DECODINGS, "None"),
    )
    f.choice("nullBytePolicy", ("Ignore",), "Ignore")
    f.finish()
    return ref


def _template(f: Fields) -> TemplateSpec:
    f.choice("engineVersion", ("v2",), "v2")
    meta = f.obj("metadata")
    labels, annotations = meta.string_map("labels"), meta.string_map("annotations")
    meta.finish()
    spec = TemplateSpec(
        type=f.string("type") or "",
        merge_policy=f.choice("mergePolicy", ("Replace", "Merge"), "Replace"),
        labels=labels,
        annotations=annotations,
        data=f.string_map("data"),
    )
    f.finish()
    return spec


def parse_external_secret(obj: object) -> ExternalSecretSpec:
    subject, namespace, name, generation, spec = object_fields(
        obj, kind="ExternalSecret", api_versions=API_VERSIONS
    )
    try:
        store = spec.obj("secretStoreRef")
        store_name = store.need_string("name")
        store_kind = store.choice("kind", ("SecretStore", "ClusterSecretStore"), "SecretStore")
        store.finish()
        interval = spec.duration("refreshInterval")
        policy = spec.choice("refreshPolicy", ("CreatedOnce", "Periodic", "OnChange"), "Periodic")
        target = spec.obj("target")
        target_name = target.string("name", pattern=r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?") or name
        creation = target.choice("creationPolicy", ("Owner", "Orphan", "Merge", "None"), "Owner")
        deletion = target.choice("deletionPolicy", ("Retain", "Delete", "Merge"), "Retain")
        immutable = target.boolean("immutable")
        template = _template(target.obj("template")) if target.present("template") else None
        target.finish()
        data = []
        for item in spec.items("data"):
            secret_key = item.need_string("secretKey", pattern=_KEY)
            data.append(DataItem(secret_key, _ref(item.obj("remoteRef"))))
            item.finish()
        data_from = []
        for item in spec.items("dataFrom"):
            extract = _ref(item.obj("extract")) if item.present("extract") else None
            find = None
            conversion, decoding = "Default", "None"
            if extract is not None:
                conversion, decoding = extract.conversion, extract.decoding
            if item.present("find"):
                fd = item.obj("find")
                name_doc = fd.obj("name")
                find = Find(
                    path=fd.string("path") or "",
                    name=name_doc.string("regexp") or "",
                    tags=fd.string_map("tags"),
                )
                name_doc.finish()
                conversion = fd.choice("conversionStrategy", CONVERSIONS, "Default")
                decoding = fd.choice("decodingStrategy", DECODINGS, "None")
                fd.finish()
            if (extract is None) == (find is None):
                raise SpecError(f"{item.path}", "exactly one of extract and find is required")
            rewrites = []
            for rw in item.items("rewrite"):
                if rw.present("regexp"):
                    rx = rw.obj("regexp")
                    rewrites.append(
                        Rewrite(source=rx.need_string("source"), target=rx.string("target") or "")
                    )
                    rx.finish()
                elif rw.present("transform"):
                    tf = rw.obj("transform")
                    rewrites.append(Rewrite(template=tf.need_string("template")))
                    tf.finish()
                rw.finish()
            data_from.append(DataFrom(extract, find, conversion, decoding, tuple(rewrites)))
            item.finish()
        spec.finish()
    except SpecError as exc:
        raise exc.about(subject) from None
    return ExternalSecretSpec(
        namespace=namespace,
        name=name,
        generation=generation,
        store_name=store_name,
        store_kind=store_kind,
        refresh_interval=DEFAULT_REFRESH if interval is None else interval,
        refresh_policy=policy,
        target_name=target_name,
        creation=creation,
        deletion=deletion,
        immutable=immutable,
        template=template,
        data=tuple(data),
        data_from=tuple(data_from),
    )
