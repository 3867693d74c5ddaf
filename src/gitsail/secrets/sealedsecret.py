"""SealedSecret objects: seal a Secret into one, unseal one into its Secret, merge re-seals.

Pure functions on plain dicts, shared by ``gitsail seal`` and the SealedSecret reconciler.
They follow kubeseal and the Bitnami controller:

- sealing takes a Secret (``data`` and ``stringData``), drops what the server owns and the
  last-applied annotations, chooses the scope from ``--scope`` or the Secret's annotations,
  writes the scope annotations on both the SealedSecret and its template, and seals each
  value with the label of ``<namespace>/<name>``;
- unsealing reads the scope from the SealedSecret's *own* annotations, so a SealedSecret moved
  to another namespace or renamed cannot be unsealed unless its scope allows it;
- merging keeps the old ciphertext of every key whose plaintext did not change (when the key
  to check it is at hand), so a re-seal does not churn Git.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from gitsail.secrets.sealing import (
    DecryptError,
    Scope,
    SealingError,
    encryption_label,
    hybrid_decrypt,
    hybrid_encrypt,
    scope_from_annotations,
)

__all__ = [
    "ANNOTATION_MANAGED",
    "ANNOTATION_PATCH",
    "ANNOTATION_SKIP_OWNER_REFERENCES",
    "API_VERSION",
    "KIND",
    "merge_sealed",
    "reencrypt",
    "seal_secret",
    "seal_value",
    "sealed_identity",
    "secret_values",
    "unseal",
    "unsealed_values",
]

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
ANNOTATION_MANAGED = "sealedsecrets.bitnami.com/managed"
ANNOTATION_PATCH = "sealedsecrets.bitnami.com/patch"
ANNOTATION_SKIP_OWNER_REFERENCES = "sealedsecrets.bitnami.com/skip-set-owner-references"

_DROPPED_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)
_SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "ownerReferences",
)


def secret_values(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """The plaintext of a Secret: ``data`` (base64) with ``stringData`` over it."""
    values: dict[str, bytes] = {}
    for key, raw in (secret.get("data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(raw), validate=True)
        except ValueError:
            raise SealingError(f"Secret data key {key!r} is not valid base64") from None
    for key, text in (secret.get("stringData") or {}).items():
        values[str(key)] = str(text).encode()
    return values


def seal_value(
    public_key: rsa.RSAPublicKey, value: bytes, *, scope: Scope, namespace: str, name: str
) -> str:
    """One bare sealed value (kubeseal ``--raw``)."""
    if scope is not Scope.CLUSTER_WIDE and not namespace:
        raise SealingError(
            "a namespace is required to seal a value for the strict or "
            "namespace-wide scope (--namespace)"
        )
    if scope is Scope.STRICT and not name:
        raise SealingError("a name is required to seal a value for the strict scope (--name)")
    return hybrid_encrypt(public_key, value, encryption_label(scope, namespace, name))


def seal_secret(
    public_key: rsa.RSAPublicKey,
    secret: Mapping[str, Any],
    *,
    scope: Scope | None = None,
    allow_empty_data: bool = False,
) -> dict[str, Any]:
    """The SealedSecret of ``secret``; ``scope`` (``--scope``) overrides its annotations."""
    if secret.get("kind") != "Secret" or secret.get("apiVersion", "v1") != "v1":
        raise SealingError("the input is not a v1 Secret")
    meta = copy.deepcopy(dict(secret.get("metadata") or {}))
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    if not name:
        raise SealingError("the Secret has no metadata.name")
    values = secret_values(secret)
    if not values and not allow_empty_data:
        raise SealingError(
            "Secret.data is empty in input Secret, assuming this is an error and aborting; "
            "to seal an empty Secret use --allow-empty-data"
        )
    for field in _SERVER_FIELDS:
        meta.pop(field, None)
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS
    }
    if scope is not None:
        annotations = {k: v for k, v in annotations.items() if k not in _all_scope_annotations()}
        annotations.update(scope.annotations())
    chosen = scope_from_annotations(annotations)
    if chosen is not Scope.CLUSTER_WIDE and not namespace:
        raise SealingError(
            f"Secret {name} has no namespace: a {chosen.value} SealedSecret is bound to one; "
            "set metadata.namespace or --namespace, or use --scope cluster-wide"
        )
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    label = encryption_label(chosen, namespace, name)
    template: dict[str, Any] = {"metadata": meta}
    if secret.get("type"):
        template["type"] = secret["type"]
    if "immutable" in secret:
        template["immutable"] = secret["immutable"]
    sealed_meta: dict[str, Any] = {"name": name}
    if namespace:
        sealed_meta["namespace"] = namespace
    scope_annotations = chosen.annotations()
    if scope_annotations:
        sealed_meta["annotations"] = scope_annotations
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": sealed_meta,
        "spec": {
            "template": template,
            "encryptedData": {
                key: hybrid_encrypt(public_key, value, label)
                for key, value in sorted(values.items())
            },
        },
    }


def _all_scope_annotations() -> set[str]:
    return {a for s in Scope for a in s.annotations()}


def sealed_identity(sealed: Mapping[str, Any]) -> tuple[str, str, bytes]:
    """Name, namespace and the scope label a SealedSecret's values are sealed under."""
    meta = sealed.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    scope = scope_from_annotations(meta.get("annotations"))
    return name, namespace, encryption_label(scope, namespace, name)


def unsealed_values(
    sealed: Mapping[str, Any],
    private_keys: Sequence[rsa.RSAPrivateKey],
    *,
    accept_v1_data: bool = True,
) -> dict[str, bytes]:
    """Every decrypted value of ``sealed`` (``encryptedData``, or the legacy ``data`` blob)."""
    spec = sealed.get("spec") or {}
    _, _, label = sealed_identity(sealed)
    encrypted = spec.get("encryptedData") or {}
    legacy = spec.get("data")
    if encrypted and legacy:
        raise SealingError("the SealedSecret sets both spec.data and spec.encryptedData")
    if legacy:
        if not accept_v1_data:
            raise SealingError("the deprecated spec.data format is not accepted")
        plain = hybrid_decrypt(private_keys, str(legacy), label)
        try:
            inner = json.loads(plain)
            return secret_values(inner)
        except (ValueError, AttributeError):
            raise SealingError("the legacy spec.data blob is not a JSON Secret") from None
    values: dict[str, bytes] = {}
    if not isinstance(encrypted, Mapping):
        raise SealingError("spec.encryptedData is not a map")
    for key, text in encrypted.items():
        values[str(key)] = hybrid_decrypt(private_keys, str(text), label)
    return values


def unseal(
    sealed: Mapping[str, Any],
    private_keys: Sequence[rsa.RSAPrivateKey],
    *,
    accept_v1_data: bool = True,
) -> dict[str, Any]:
    """The Secret ``sealed`` produces: template metadata, forced name/namespace, owner ref."""
    name, namespace, _ = sealed_identity(sealed)
    spec = sealed.get("spec") or {}
    template = spec.get("template") or {}
    values = unsealed_values(sealed, private_keys, accept_v1_data=accept_v1_data)
    values.update(_render_template_data(template.get("data") or {}, values))
    meta = copy.deepcopy(dict(template.get("metadata") or {}))
    meta["name"] = name
    meta["namespace"] = namespace
    for field in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
        meta.pop(field, None)
    annotations = meta.get("annotations") or {}
    uid = (sealed.get("metadata") or {}).get("uid")
    if annotations.get(ANNOTATION_SKIP_OWNER_REFERENCES) != "true" and uid:
        meta["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid, "controller": True}
        ]
    else:
        meta.pop("ownerReferences", None)
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": template.get("type") or "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(values.items())},
    }
    if "immutable" in template:
        secret["immutable"] = template["immutable"]
    return secret


def _render_template_data(
    templates: Mapping[str, Any], values: Mapping[str, bytes]
) -> dict[str, bytes]:
    """Template ``data`` entries: ``{{ .key }}`` and ``{{ toJson .key }}`` substitutions.

    The real controller runs Go text/template with sprig; gitsail supports the two forms its
    examples use and refuses anything else by key name (never by value).
    """
    from gitsail.secrets._template import render

    rendered: dict[str, bytes] = {}
    errors: list[str] = []
    context = {k: v.decode("utf-8", errors="replace") for k, v in values.items()}
    for key, text in templates.items():
        try:
            rendered[str(key)] = render(str(text), context).encode()
        except SealingError as exc:
            errors.append(f"template data {key!r}: {exc}")
    if errors:
        raise SealingError("; ".join(errors))
    return rendered


def merge_sealed(
    target: Mapping[str, Any],
    resealed: Mapping[str, Any],
    *,
    plaintexts: Mapping[str, bytes],
    private_keys: Sequence[rsa.RSAPrivateKey] = (),
) -> dict[str, Any]:
    """``--merge-into``: ``resealed`` (sealed with the target's name and namespace) into ``target``.

    Keys in ``resealed`` overwrite the target's ciphertext, except those whose target value
    still decrypts to the same plaintext with ``private_keys``: they keep their old bytes.
    Template annotations, labels and data are merged; keys absent from the input are kept.
    """
    merged = copy.deepcopy(dict(target))
    spec = merged.setdefault("spec", {})
    encrypted = spec.setdefault("encryptedData", {})
    _, _, label = sealed_identity(target)
    for key, value in (resealed.get("spec") or {}).get("encryptedData", {}).items():
        old = encrypted.get(key)
        if old is not None and private_keys and key in plaintexts:
            try:
                if hybrid_decrypt(private_keys, str(old), label) == plaintexts[key]:
                    continue
            except SealingError:
                pass
        encrypted[key] = value
    new_template = (resealed.get("spec") or {}).get("template") or {}
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    for field in ("annotations", "labels"):
        incoming = (new_template.get("metadata") or {}).get(field) or {}
        if incoming:
            tmeta.setdefault(field, {}).update(incoming)
    if new_template.get("data"):
        template.setdefault("data", {}).update(new_template["data"])
    return merged


def reencrypt(
    sealed: Mapping[str, Any],
    private_keys: Sequence[rsa.RSAPrivateKey],
    public_key: rsa.RSAPublicKey,
) -> dict[str, Any]:
    """``sealed`` with every value re-sealed for ``public_key`` (same label, same plaintext).

    A legacy ``spec.data`` blob is re-sealed as one blob. Raises DecryptError when a value
    does not decrypt with any of ``private_keys``.
    """
    out = copy.deepcopy(dict(sealed))
    spec = out.get("spec") or {}
    _, _, label = sealed_identity(sealed)
    if spec.get("data"):
        spec["data"] = hybrid_encrypt(
            public_key, hybrid_decrypt(private_keys, str(spec["data"]), label), label
        )
    if "encryptedData" in spec:
        spec["encryptedData"] = {
            key: hybrid_encrypt(public_key, hybrid_decrypt(private_keys, str(text), label), label)
            for key, text in (spec["encryptedData"] or {}).items()
        }
    return out


__all__ += ["DecryptError"]
