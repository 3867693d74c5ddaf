"""The Vault Agent injector: a mutating admission webhook for pods, served over TLS.

``gitsail controller --vault-injector`` runs it beside the controller (one more task in the
same event loop). The mechanism:

1. **Certificates.** ``WebhookPKI`` makes a private CA and a serving certificate for the
   webhook's host names in memory (EC P-256), writes them to a private temporary directory
   (0700, key 0600) only because ``ssl`` loads from files, and serves with an ``SSLContext``
   whose chain is reloaded in place: new handshakes get the new certificate, open
   connections are not cut. The serving certificate lives ``cert_lifetime`` (7 days) and is
   renewed after two thirds of it; the CA lives ``ca_lifetime`` (1 year) and is renewed the
   same way, the old CA staying in the published bundle until it expires so that the
   apiserver trusts both the old and the new serving certificate during the switch.
2. **Registration.** A ``MutatingWebhookConfiguration`` (server-side apply, field manager
   ``gitsail-vault-injector``) names the webhook, carries the CA bundle, and points the
   apiserver at ``clientConfig.url`` (``https://127.0.0.1:PORT/mutate``: a controller run
   outside the cluster, as against the dev cluster) or at ``clientConfig.service`` (installed
   in the cluster: ``gitsail install --vault-injector``). It is re-applied whenever the bundle
   changes, before the new serving certificate is used.
3. **Admission.** ``POST /mutate`` reads an ``admission.k8s.io/v1`` AdmissionReview (capped at
   ``MAX_REVIEW_BYTES``), asks ``gitsail.secrets.vault_agent.pod_patch`` for the JSONPatch and
   answers ``allowed: true`` with ``patchType: JSONPatch`` — or ``allowed: true`` with no patch
   for a pod that does not ask (the common case, answered before anything else is looked
   at), or ``allowed: false`` with the reason when an annotated pod's annotations cannot be
   honoured (as vault-k8s does).

**Failure policy.** Admission webhooks select by namespace and object *labels*, never by
annotation, so every pod created in a selected namespace is sent here. The webhook is
registered with ``failurePolicy: Ignore`` and a 10 s timeout: when gitsail is down,
unreachable or slow, the apiserver admits the pod unmutated. A pod without the annotation is
therefore never blocked; an annotated pod created while the webhook is down starts *without*
its agent (and so without its ``/vault/secrets`` files) — the same trade-off as vault-k8s'
chart default; delete the pod once the injector is back and its controller recreates it
injected. The webhook only registers for pod CREATE; ``kube-system``, ``kube-public``,
``kube-node-lease`` and the controller's own namespace are excluded by the default namespace
selector, and the controller's own pods by the object selector.

No secret value passes through here: the agent fetches secrets inside the pod. Requests are
logged by namespace, name and outcome only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gitsail.kube import Conflict, Kube, NotFound
from gitsail.model import Obj
from gitsail.secrets.vault_agent import INJECT, InjectError, InjectorDefaults, pod_patch

__all__ = [
    "FIELD_MANAGER",
    "MAX_REVIEW_BYTES",
    "InjectorOptions",
    "VaultInjector",
    "WebhookPKI",
    "parse_selector",
    "review_response",
    "webhook_configuration",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "gitsail-vault-injector"
PATH = "/mutate"
# The apiserver sends at most its own request limit (3 MiB); a pod is far smaller.
MAX_REVIEW_BYTES = 3 * 1024 * 1024
BODY_TIMEOUT = 10.0
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
CONTROLLER_NAME = "gitsail-controller"


@dataclass(frozen=True)
class InjectorOptions:
    """Where the webhook listens and how it is registered."""

    host: str = "127.0.0.1"
    port: int = 8443
    name: str = "gitsail-vault-agent-injector"
    # (namespace, name, port) of the Service in front of the controller when installed
    # in the cluster; None registers ``https://HOST:PORT/mutate``.
    service: tuple[str, str, int] | None = None
    # namespaceSelector of the webhook; None excludes the system namespaces and ``exclude``.
    namespace_selector: Obj | None = None
    exclude_namespaces: tuple[str, ...] = ()
    defaults: InjectorDefaults = field(default_factory=InjectorDefaults)
    # (namespace, name) of the Secret that shares the CA and serving certificate between
    # replicas; None keeps them in this process only.
    tls_secret: tuple[str, str] | None = None
    cert_lifetime: dt.timedelta = dt.timedelta(days=7)
    ca_lifetime: dt.timedelta = dt.timedelta(days=365)
    timeout_seconds: int = 10


def parse_selector(text: str) -> Obj:
    """``k=v,k2=v2`` (equality only) as a ``matchLabels`` selector; refuses anything else."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key or "!" in key or value.startswith("="):
            raise ValueError(f"selector {part!r}: expected key=value")
        labels[key.strip()] = value.strip()
    if not labels:
        raise ValueError("empty selector")
    return {"matchLabels": labels}


def review_response(review: Obj, defaults: InjectorDefaults) -> Obj:
    """The AdmissionReview (v1) answer to ``review``; pure."""
    request = review.get("request") or {}
    response: Obj = {"uid": str(request.get("uid", "")), "allowed": True}
    out = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    pod = request.get("object") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if INJECT not in annotations:  # the common case: not ours, admitted unchanged at once
        return out
    if (request.get("kind") or {}).get("kind") != "Pod" or request.get("operation") != "CREATE":
        return out
    try:
        ops = pod_patch(pod, defaults)
    except InjectError as exc:
        response["allowed"] = False
        response["status"] = {
            "code": 400,
            "reason": "BadRequest",
            "message": f"vault agent injection refused: {exc}",
        }
        return out
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return out


def webhook_configuration(options: InjectorOptions, ca_bundle: bytes) -> Obj:
    """The MutatingWebhookConfiguration that sends pod creations to this injector."""
    client: Obj = {"caBundle": base64.b64encode(ca_bundle).decode()}
    if options.service is not None:
        namespace, name, port = options.service
        client["service"] = {"namespace": namespace, "name": name, "port": port, "path": PATH}
    else:
        client["url"] = f"https://{_url_host(options.host)}:{options.port}{PATH}"
    selector = options.namespace_selector
    if selector is None:
        excluded = sorted({*SYSTEM_NAMESPACES, *options.exclude_namespaces})
        selector = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}
            ]
        }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": options.name,
            "labels": {"app.kubernetes.io/managed-by": "gitsail"},
        },
        "webhooks": [
            {
                "name": "vault-agent-injector.gitsail.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": options.timeout_seconds,
                "clientConfig": client,
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": selector,
                "objectSelector": {
                    "matchExpressions": [
                        {
                            "key": "app.kubernetes.io/name",
                            "operator": "NotIn",
                            "values": [CONTROLLER_NAME],
                        }
                    ]
                },
            }
        ],
    }


def _url_host(host: str) -> str:
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _due(cert: x509.Certificate, now: dt.datetime) -> bool:
    """Renew after two thirds of the certificate's lifetime."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * 2 / 3


class WebhookPKI:
    """A private CA and the webhook's serving certificate, renewed before they expire."""

    def __init__(
        self,
        hosts: list[str],
        *,
        cert_lifetime: dt.timedelta,
        ca_lifetime: dt.timedelta,
        now: dt.datetime,
    ) -> None:
        self.hosts = hosts
        self.cert_lifetime = cert_lifetime
        self.ca_lifetime = ca_lifetime
        self._old_cas: list[x509.Certificate] = []
        self._new_ca(now)
        self._new_leaf(now)

    def _new_ca(self, now: dt.datetime) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitsail-vault-injector-ca")])
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + self.ca_lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), False
            )
            .sign(self.ca_key, hashes.SHA256())
        )

    def _new_leaf(self, now: dt.datetime) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in self.hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        not_after = min(now + self.cert_lifetime, self.ca.not_valid_after_utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitsail-vault-injector")])
            )
            .issuer_name(self.ca.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), False
            )
            .sign(self.ca_key, hashes.SHA256())
        )

    @classmethod
    def from_data(
        cls,
        data: Mapping[str, bytes],
        hosts: list[str],
        *,
        cert_lifetime: dt.timedelta,
        ca_lifetime: dt.timedelta,
    ) -> WebhookPKI | None:
        """The PKI kept in a Secret's data (``to_data``); None when it is not usable."""
        try:
            cas = x509.load_pem_x509_certificates(data["ca.crt"])
            ca_key = serialization.load_pem_private_key(data["ca.key"], None)
            cert = x509.load_pem_x509_certificate(data["tls.crt"])
            key = serialization.load_pem_private_key(data["tls.key"], None)
        except (KeyError, ValueError):
            return None
        if not (
            isinstance(ca_key, ec.EllipticCurvePrivateKey)
            and isinstance(key, ec.EllipticCurvePrivateKey)
            and cas
            and ca_key.public_key() == cas[0].public_key()
            and key.public_key() == cert.public_key()
            and cert.issuer == cas[0].subject
        ):
            return None
        pki = cls.__new__(cls)
        pki.hosts, pki.cert_lifetime, pki.ca_lifetime = hosts, cert_lifetime, ca_lifetime
        pki.ca, pki.ca_key, pki._old_cas = cas[0], ca_key, cas[1:]
        pki.cert, pki.key = cert, key
        return pki

    def to_data(self) -> dict[str, bytes]:
        """What a Secret keeps so that every replica serves certificates of one CA."""
        return {
            "ca.crt": self.ca_bundle,
            "ca.key": _key_pem(self.ca_key),
            "tls.crt": self.cert_pem,
            "tls.key": self.key_pem,
        }

    def _names_hosts(self) -> bool:
        try:
            sans = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return False
        names = {str(v) for v in sans.value.get_values_for_type(x509.DNSName)}
        names |= {str(v) for v in sans.value.get_values_for_type(x509.IPAddress)}
        return names == set(self.hosts)

    @property
    def ca_bundle(self) -> bytes:
        """PEM of every CA the apiserver must trust now (the current one first)."""
        return b"".join(_pem(c) for c in [self.ca, *self._old_cas])

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def rotate(self, now: dt.datetime) -> bool:
        """Renew what is due; True when the serving certificate (or the bundle) changed."""
        before = len(self._old_cas)
        self._old_cas = [c for c in self._old_cas if c.not_valid_after_utc > now]
        changed = len(self._old_cas) != before
        if _due(self.ca, now):
            self._old_cas.insert(0, self.ca)
            self._new_ca(now)
            self._new_leaf(now)
            return True
        if _due(self.cert, now) or not self._names_hosts():
            self._new_leaf(now)
            return True
        return changed


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class VaultInjector:
    """The webhook's server, certificates and registration (``run`` until cancelled)."""

    def __init__(
        self, kube: Kube, options: InjectorOptions, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self.kube = kube
        self.options = options
        self.clock = clock
        hosts = [options.host] if options.service is None else []
        if options.service is not None:
            namespace, name, _port = options.service
            hosts += [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
        self.pki = WebhookPKI(
            hosts,
            cert_lifetime=options.cert_lifetime,
            ca_lifetime=options.ca_lifetime,
            now=clock(),
        )
        self._dir = Path(tempfile.mkdtemp(prefix="gitsail-vault-injector-"))
        self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_chain()

    def _load_chain(self) -> None:
        cert, key = self._dir / "tls.crt", self._dir / "tls.key"
        key.touch(mode=0o600)
        key.write_bytes(self.pki.key_pem)
        cert.write_bytes(self.pki.cert_pem)
        self.ssl.load_cert_chain(cert, key)

    def app(self) -> Starlette:
        defaults = self.options.defaults

        async def mutate(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and (
                not declared.isdigit() or int(declared) > MAX_REVIEW_BYTES
            ):
                return Response("review too large", status_code=413)
            body = bytearray()
            try:
                async with asyncio.timeout(BODY_TIMEOUT):
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > MAX_REVIEW_BYTES:
                            return Response("review too large", status_code=413)
            except TimeoutError:
                return Response("request body too slow", status_code=408)
            try:
                review = json.loads(body)
                if not isinstance(review, dict):
                    raise ValueError("not an object")
            except ValueError:
                return Response("not an AdmissionReview", status_code=400)
            answer = review_response(review, defaults)
            request_info = review.get("request") or {}
            meta = (request_info.get("object") or {}).get("metadata") or {}
            result = answer["response"]
            outcome = (
                "injected"
                if "patch" in result
                else ("refused" if not result["allowed"] else "admitted unchanged")
            )
            if outcome != "admitted unchanged":
                log.info(
                    "vault injector: pod %s/%s %s",
                    request_info.get("namespace", ""),
                    meta.get("name") or meta.get("generateName", ""),
                    outcome,
                )
            return JSONResponse(answer)

        async def healthz(_request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        return Starlette(
            routes=[
                Route(PATH, mutate, methods=["POST"]),
                Route("/healthz", healthz, methods=["GET"]),
            ]
        )

    def server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app(),
            host=self.options.host,
            port=self.options.port,
            log_level="warning",
            lifespan="off",
            ssl_context_factory=lambda _config, _default: self.ssl,
            limit_concurrency=64,
            timeout_keep_alive=30,
        )
        return uvicorn.Server(config)

    async def register(self) -> Obj:
        obj = webhook_configuration(self.options, self.pki.ca_bundle)
        return await self.kube.apply(obj, field_manager=FIELD_MANAGER, force=True)

    async def unregister(self) -> None:
        with contextlib.suppress(NotFound):
            await self.kube.delete(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                self.options.name,
            )

    async def _adopt(self, pki: WebhookPKI, *, serving: bool = True) -> None:
        """Serve ``pki``; when its CA bundle is new, publish the bundle first (it still
        trusts the previous CA, which other replicas may be serving with)."""
        if pki.cert_pem == self.pki.cert_pem:
            return
        bundle_changed = pki.ca_bundle != self.pki.ca_bundle
        self.pki = pki
        if bundle_changed and serving:
            await self.register()
        self._load_chain()
        log.info("vault injector: serving certificate renewed")

    async def _sync_store(self, store: tuple[str, str], *, serving: bool = True) -> None:
        """Share the PKI through the Secret: adopt what is stored, renew what is due there
        (a write guarded by resourceVersion, so one replica renews and the others adopt)."""
        namespace, name = store
        now = self.clock()
        secret = await self.kube.get("v1", "Secret", name, namespace)
        stored = None
        if secret is not None:
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            stored = WebhookPKI.from_data(
                data,
                self.pki.hosts,
                cert_lifetime=self.options.cert_lifetime,
                ca_lifetime=self.options.ca_lifetime,
            )
        if stored is not None and not stored.rotate(now):
            await self._adopt(stored, serving=serving)
            return
        fresh = stored or self.pki
        if stored is None:
            fresh.rotate(now)
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "gitsail"},
            },
            "data": {k: base64.b64encode(v).decode() for k, v in fresh.to_data().items()},
        }
        try:
            if secret is None:
                await self.kube.create(body)
            else:
                body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                await self.kube.replace(body)
        except Conflict:  # another replica wrote first: adopt its PKI on the next sync
            log.info("vault injector: certificates written by another replica")
            return
        await self._adopt(fresh, serving=serving)

    async def _refresh(self) -> None:
        """Bring the certificates up to date, then the registration (its bundle first)."""
        if self.options.tls_secret is not None:
            await self._sync_store(self.options.tls_secret)
            return
        if self.pki.rotate(self.clock()):
            await self.register()  # the bundle first: it trusts old and new
            self._load_chain()
            log.info("vault injector: serving certificate renewed")

    async def _refresh_forever(self) -> None:
        every = max(1.0, min(300.0, self.options.cert_lifetime.total_seconds() / 20))
        while True:
            await asyncio.sleep(every)
            await self._refresh()
            await self.register()  # also heals a deleted or edited registration

    async def run(self) -> None:
        """Serve, register, renew; until cancelled (the registration stays: Ignore)."""
        if self.options.tls_secret is not None:  # before serving: never a throwaway cert
            await self._sync_store(self.options.tls_secret, serving=False)
        server = self.server()
        serve = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if serve.done():  # uvicorn exits (SystemExit) when it cannot bind
                    with contextlib.suppress(BaseException):
                        serve.result()
                    raise OSError(f"vault injector could not listen on port {self.options.port}")
                await asyncio.sleep(0.05)
            await self.register()
            log.info(
                "vault injector: serving https://%s:%d%s, registered as %s",
                self.options.host,
                self.options.port,
                PATH,
                self.options.name,
            )
            await asyncio.gather(serve, self._refresh_forever())
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(serve, 5)
            shutil.rmtree(self._dir, ignore_errors=True)
