"""`gitsail seal`: kubeseal's command line, on gitsail's Sealed Secrets implementation.

Reads Secrets (JSON or YAML, several documents allowed) from ``-f`` or stdin and writes
SealedSecrets to ``-w`` or stdout, sealed with the certificate from ``--cert`` (a file or an
http(s) URL) or fetched from the controller through the API server's service proxy. The same
flags and refusals as kubeseal (``--raw``, ``--merge-into``, ``--re-encrypt``, ``--validate``,
``--recovery-unseal``, ``--fetch-cert``); see docs/secrets.md for the differences.

Plaintext never leaves this process except as the ``--recovery-unseal`` output the user asked
for: errors name keys and objects, never values.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
import yaml

from gitsail.cli.output import fail
from gitsail.kube import Kube, KubeError, load_kubeconfig
from gitsail.secrets import controller_api
from gitsail.secrets.keys import private_keys_from_bytes
from gitsail.secrets.sealedsecret import (
    merge_sealed,
    seal_secret,
    seal_value,
    secret_values,
    unseal,
)
from gitsail.secrets.sealing import (
    Scope,
    SealingError,
    public_key_from_pem,
    scope_from_annotations,
)

app = typer.Typer(
    name="seal",
    help="Seal Secrets for Git (kubeseal-compatible Sealed Secrets).",
    invoke_without_command=True,
    no_args_is_help=False,
)

_MAX_INPUT = 4 << 20
_MAX_CERT = 64 * 1024
T = TypeVar("T")


class SealFormat(StrEnum):
    json = "json"
    yaml = "yaml"


def _read(path: str | None) -> bytes:
    if path in (None, "", "-"):
        data = sys.stdin.buffer.read(_MAX_INPUT + 1)
    else:
        with Path(path).open("rb") as handle:
            data = handle.read(_MAX_INPUT + 1)
    if len(data) > _MAX_INPUT:
        raise SealingError(f"input is larger than {_MAX_INPUT} bytes")
    return data


def _documents(raw: bytes) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(raw) if d is not None]
    except yaml.YAMLError as exc:
        raise SealingError(f"input is not JSON or YAML: {type(exc).__name__}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise SealingError("every input document must be an object")
        if doc.get("kind") == "List":
            out += [i for i in doc.get("items") or [] if isinstance(i, dict)]
        else:
            out.append(doc)
    return out


def _dump(objs: list[dict[str, Any]], fmt: SealFormat) -> str:
    if fmt is SealFormat.yaml:
        return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objs)
    return "".join(json.dumps(o, indent=4) + "\n" for o in objs)


def _write(text: str, path: str | None) -> None:
    if path in (None, "", "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text)


def _cluster(
    kubeconfig: str | None, context: str | None, action: Callable[[Kube], Awaitable[T]]
) -> T:
    async def run() -> T:
        config = await load_kubeconfig(kubeconfig.split(":")[0] if kubeconfig else None, context)
        async with Kube(config) as kube:
            return await action(kube)

    return asyncio.run(run())


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    async def run() -> str:
        config = await load_kubeconfig(kubeconfig.split(":")[0] if kubeconfig else None, context)
        return config.namespace

    try:
        return asyncio.run(run())
    except (KubeError, OSError):
        return ""


def _cert_bytes(
    cert: str | None,
    controller_namespace: str,
    controller_name: str,
    kubeconfig: str | None,
    context: str | None,
) -> bytes:
    if cert and cert.startswith(("http://", "https://")):
        with httpx.stream("GET", cert, timeout=30.0, follow_redirects=False) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_CERT:
                    raise SealingError(f"certificate at {cert} is larger than {_MAX_CERT} bytes")
            return body
    if cert:
        data = Path(cert).read_bytes()
        if len(data) > _MAX_CERT:
            raise SealingError(f"certificate file {cert} is larger than {_MAX_CERT} bytes")
        return data
    return _cluster(
        kubeconfig,
        context,
        lambda kube: controller_api.fetch_cert(kube, controller_namespace, controller_name),
    )


def _recovery_keys(paths: str | None) -> list[Any]:
    if not paths:
        return []
    keys: list[Any] = []
    for path in paths.split(","):
        keys += private_keys_from_bytes(Path(path.strip()).read_bytes())
    if not keys:
        raise SealingError("--recovery-private-key holds no private key")
    return keys


@app.callback()
def seal(
    ctx: typer.Context,
    secret_file: str | None = typer.Option(
        None, "--secret-file", "-f", help="input file (default: stdin)"
    ),
    sealed_file: str | None = typer.Option(
        None, "--sealed-secret-file", "-w", help="output file (default: stdout)"
    ),
    fmt: SealFormat = typer.Option(SealFormat.json, "--format", "-o", help="json or yaml"),
    cert: str | None = typer.Option(
        None, "--cert", envvar="SEALED_SECRETS_CERT", help="certificate file or http(s) URL"
    ),
    fetch_cert: bool = typer.Option(False, "--fetch-cert", help="print the controller's cert"),
    controller_name: str = typer.Option(
        controller_api.DEFAULT_CONTROLLER_NAME,
        "--controller-name",
        envvar="SEALED_SECRETS_CONTROLLER_NAME",
    ),
    controller_namespace: str = typer.Option(
        controller_api.DEFAULT_CONTROLLER_NAMESPACE,
        "--controller-namespace",
        envvar="SEALED_SECRETS_CONTROLLER_NAMESPACE",
    ),
    scope: str | None = typer.Option(
        None, "--scope", help="strict, namespace-wide or cluster-wide (default: annotations)"
    ),
    raw: bool = typer.Option(False, "--raw", help="seal one value (--from-file) and print it"),
    name: str = typer.Option("", "--name", help="the Secret's name (--raw)"),
    namespace: str = typer.Option("", "--namespace", "-n", help="the Secret's namespace"),
    from_file: list[str] = typer.Option(
        [], "--from-file", help="[key=]path of the value to seal (--raw)"
    ),
    merge_into: str | None = typer.Option(
        None, "--merge-into", help="merge the sealed values into this SealedSecret file"
    ),
    re_encrypt: bool = typer.Option(
        False, "--re-encrypt", "--rotate", help="re-encrypt with the controller's newest key"
    ),
    validate: bool = typer.Option(False, "--validate", help="ask the controller to verify"),
    recovery_unseal: bool = typer.Option(
        False, "--recovery-unseal", help="decrypt offline with --recovery-private-key"
    ),
    recovery_private_key: str | None = typer.Option(
        None,
        "--recovery-private-key",
        help="private key PEM or key Secret files, comma separated (also lets --merge-into "
        "keep the ciphertext of unchanged values)",
    ),
    allow_empty_data: bool = typer.Option(False, "--allow-empty-data"),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
) -> None:
    """Seal Secrets read from -f or stdin into SealedSecrets (kubeseal's flags)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        chosen_scope = Scope.parse(scope) if scope else None
        if fetch_cert:
            pem = _cert_bytes(cert, controller_namespace, controller_name, kubeconfig, context)
            _write(pem.decode(), sealed_file)
            return
        if recovery_unseal:
            keys = _recovery_keys(recovery_private_key)
            if not keys:
                raise SealingError("--recovery-unseal needs --recovery-private-key")
            docs = _documents(_read(secret_file))
            _write(_dump([unseal(d, keys) for d in docs], fmt), sealed_file)
            return
        if validate or re_encrypt:
            docs = _documents(_read(secret_file))
            _controller_calls(
                docs,
                validate,
                fmt,
                sealed_file,
                kubeconfig,
                context,
                controller_namespace,
                controller_name,
            )
            return
        public_key = public_key_from_pem(
            _cert_bytes(cert, controller_namespace, controller_name, kubeconfig, context)
        )
        if raw:
            _seal_raw(public_key, chosen_scope or Scope.STRICT, name, namespace, from_file)
            return
        docs = _documents(_read(secret_file))
        sealed: list[dict[str, Any]] = []
        for doc in docs:
            doc = _with_namespace(doc, namespace, chosen_scope, kubeconfig, context)
            if merge_into:
                _merge(public_key, doc, merge_into, chosen_scope, recovery_private_key)
                continue
            sealed.append(
                seal_secret(public_key, doc, scope=chosen_scope, allow_empty_data=allow_empty_data)
            )
        if not merge_into:
            _write(_dump(sealed, fmt), sealed_file)
    except (SealingError, KubeError, LookupError, OSError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from exc


def _with_namespace(
    doc: dict[str, Any],
    namespace: str,
    scope: Scope | None,
    kubeconfig: str | None,
    context: str | None,
) -> dict[str, Any]:
    meta = dict(doc.get("metadata") or {})
    existing = str(meta.get("namespace") or "")
    if namespace and existing and namespace != existing:
        raise SealingError(
            f"the Secret's namespace {existing!r} differs from --namespace {namespace!r}"
        )
    if existing or scope is Scope.CLUSTER_WIDE:
        return doc
    filled = namespace or _context_namespace(kubeconfig, context)
    if filled:
        meta["namespace"] = filled
    return {**doc, "metadata": meta}


def _seal_raw(
    public_key: Any, scope: Scope, name: str, namespace: str, from_file: list[str]
) -> None:
    if len(from_file) != 1:
        raise SealingError("--raw needs exactly one --from-file")
    if scope is not Scope.CLUSTER_WIDE and not namespace:
        raise SealingError(
            f"must provide the --namespace flag with --raw and --scope {scope.value}"
        )
    if scope is Scope.STRICT and not name:
        raise SealingError("must provide the --name flag with --raw and --scope strict")
    path = from_file[0].split("=", 1)[-1]
    value = Path(path).read_bytes()
    sys.stdout.write(seal_value(public_key, value, scope=scope, namespace=namespace, name=name))
    sys.stdout.flush()


def _merge(
    public_key: Any,
    secret: dict[str, Any],
    merge_into: str,
    scope: Scope | None,
    recovery_private_key: str | None,
) -> None:
    target_text = Path(merge_into).read_text()
    as_json = target_text.lstrip().startswith("{")
    targets = _documents(target_text.encode())
    if len(targets) != 1:
        raise SealingError(f"{merge_into} must hold exactly one SealedSecret")
    target = targets[0]
    tmeta = target.get("metadata") or {}
    smeta = dict(secret.get("metadata") or {})
    smeta["name"] = tmeta.get("name")
    if tmeta.get("namespace"):
        smeta["namespace"] = tmeta["namespace"]
    # Seal for the target's name, namespace and scope, whatever the input says.
    target_scope = scope or scope_from_annotations(tmeta.get("annotations"))
    resealed = seal_secret(
        public_key, {**secret, "metadata": smeta}, scope=target_scope, allow_empty_data=True
    )
    keys = _recovery_keys(recovery_private_key)
    merged = merge_sealed(target, resealed, plaintexts=secret_values(secret), private_keys=keys)
    if as_json:
        Path(merge_into).write_text(json.dumps(merged, indent=4) + "\n")
    else:
        Path(merge_into).write_text(yaml.safe_dump(merged, sort_keys=False))


def _controller_calls(
    docs: list[dict[str, Any]],
    validate: bool,
    fmt: SealFormat,
    sealed_file: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str,
    name: str,
) -> None:
    async def run(kube: Kube) -> list[Any]:
        results: list[Any] = []
        for doc in docs:
            if validate:
                results.append(await controller_api.verify(kube, namespace, name, doc))
            else:
                results.append(await controller_api.rotate(kube, namespace, name, doc))
        return results

    results = _cluster(kubeconfig, context, run)
    if validate:
        if not all(results):
            raise SealingError("unable to decrypt sealed secret")
        return
    _write(_dump(results, fmt), sealed_file)
