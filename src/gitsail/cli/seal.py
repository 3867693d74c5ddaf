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
from gitsail.secrets.sealing import fingerprint as target_fingerprint

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


_MAX_FILES = 10_000
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _manifest_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        if ".git" in path.relative_to(root).parts:
            continue
        if path.is_file() and not path.is_symlink() and path.suffix in _MANIFEST_SUFFIXES:
            found.append(path)
            if len(found) > _MAX_FILES:
                raise SealingError(f"more than {_MAX_FILES} manifest files under {root}")
    return found


def _git(args: list[str], cwd: Path) -> str:
    import subprocess

    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    if proc.returncode != 0:
        raise SealingError(f"git {args[0]} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


@app.command("rotate")
def rotate(
    path: Path = typer.Argument(Path(), help="a checkout (or one file) to re-encrypt"),
    recovery_private_key: str | None = typer.Option(
        None,
        "--recovery-private-key",
        help="key PEM or key Secret files, comma separated (default: the key Secrets in "
        "--controller-namespace, read with your kubeconfig)",
    ),
    controller_namespace: str = typer.Option(
        controller_api.DEFAULT_CONTROLLER_NAMESPACE,
        "--controller-namespace",
        envvar="SEALED_SECRETS_CONTROLLER_NAMESPACE",
        help="where the sealing keys are",
    ),
    commit: bool = typer.Option(False, "--commit", help="commit the changes (one commit)"),
    branch: str | None = typer.Option(
        None, "--branch", help="create this branch first (for a pull request); implies --commit"
    ),
    report: bool = typer.Option(
        False, "--report", help="also list the cluster's SealedSecrets still on an old key"
    ),
    to_cert: str | None = typer.Option(
        None,
        "--to-cert",
        help="re-seal every value for this certificate (file or URL) instead: another "
        "cluster's controller",
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
) -> None:
    """Re-encrypt every SealedSecret under PATH with the newest key, changing only values
    not sealed for it yet; optionally in one commit (or on a new branch)."""
    from gitsail.secrets.keys import KEY_LABEL_SELECTOR, keyring_from_secrets
    from gitsail.secrets.rotate import keys_in_use, rotate_text

    try:
        if recovery_private_key:
            secrets = _key_secret_files(recovery_private_key)
        else:
            secrets = _cluster(
                kubeconfig,
                context,
                lambda kube: kube.list(
                    "v1", "Secret", controller_namespace, label_selector=KEY_LABEL_SELECTOR
                ),
            )
        ring, problems = keyring_from_secrets(secrets)
        for problem in problems:
            typer.echo(f"warning: {problem}", err=True)
        if ring.newest is None:
            raise SealingError("no sealing key found")
        target = None
        if to_cert:
            target = public_key_from_pem(
                _cert_bytes(to_cert, controller_namespace, "", kubeconfig, context)
            )
        fingerprint = target_fingerprint(target) if target else ring.newest.fingerprint
        changed_files: list[Path] = []
        for file in _manifest_files(path):
            text = file.read_text()
            if "SealedSecret" not in text:
                continue
            new_text, rotated = rotate_text(text, ring, to=target)
            for item in rotated:
                typer.echo(
                    f"{file}: SealedSecret {item.namespace}/{item.name} re-encrypted "
                    f"({', '.join(k or 'data' for k in item.keys)})"
                )
            if new_text != text:
                file.write_text(new_text)
                changed_files.append(file)
        typer.echo(f"{len(changed_files)} file(s) re-encrypted with key {fingerprint}")
        if changed_files and (commit or branch):
            top = Path(
                _git(
                    ["rev-parse", "--show-toplevel"], path if path.is_dir() else path.parent
                ).strip()
            )
            if branch:
                from gitsail.workflow.gitops import GitError, check_branch_name

                try:  # never an option, never a ref git would refuse
                    check_branch_name(branch, top)
                except GitError as exc:
                    raise SealingError(str(exc)) from None
                _git(["switch", "-c", branch], top)
            _git(["add", "--", *(str(f.resolve()) for f in changed_files)], top)
            _git(
                [
                    "commit",
                    "-q",
                    "-m",
                    f"Re-encrypt {len(changed_files)} SealedSecret file(s) with sealing key "
                    f"{fingerprint}",
                ],
                top,
            )
            typer.echo(f"committed on {branch or 'the current branch'}")
        if report:
            listed = _cluster(
                kubeconfig, context, lambda kube: kube.list("bitnami.com/v1alpha1", "SealedSecret")
            )
            newest = ring.newest.fingerprint
            for namespace, name, used in keys_in_use(listed, list(reversed(ring.keys))):
                if used != newest:
                    typer.echo(f"still on an old key: SealedSecret {namespace}/{name} ({used})")
    except (SealingError, KubeError, OSError) as exc:
        raise fail(str(exc)) from exc


def _key_secret_files(paths: str) -> list[dict[str, Any]]:
    """Key Secrets (or Lists of them) from files: rotation needs their certificates, whose
    dates say which key is the newest, so bare PEM keys are refused."""
    secrets: list[dict[str, Any]] = []
    for path in paths.split(","):
        raw = Path(path.strip()).read_bytes()
        if raw.lstrip().startswith(b"-----BEGIN"):
            raise SealingError(
                f"{path.strip()} is a bare PEM key: rotate needs key Secrets (with tls.crt) "
                "to know which key is the newest"
            )
        secrets += _documents(raw)
    return secrets


@app.command("reseal")
def reseal(
    path: Path = typer.Argument(Path(), help="a checkout (or one file) to move"),
    to_cert: str = typer.Option(
        ..., "--to-cert", help="the other cluster's controller certificate (file or URL)"
    ),
    recovery_private_key: str | None = typer.Option(
        None,
        "--recovery-private-key",
        help="this cluster's key PEM or key Secret files, comma separated (default: the key "
        "Secrets in --controller-namespace, read with your kubeconfig)",
    ),
    controller_namespace: str = typer.Option(
        controller_api.DEFAULT_CONTROLLER_NAMESPACE,
        "--controller-namespace",
        envvar="SEALED_SECRETS_CONTROLLER_NAMESPACE",
        help="where this cluster's sealing keys are",
    ),
    commit: bool = typer.Option(False, "--commit", help="commit the changes (one commit)"),
    branch: str | None = typer.Option(
        None, "--branch", help="create this branch first (for a pull request); implies --commit"
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG"),
    context: str | None = typer.Option(None, "--context"),
) -> None:
    """Move every SealedSecret under PATH to another cluster's key (Bitnami issue #365):
    each value is opened with this cluster's keys and sealed for --to-cert. The same as
    `gitsail seal rotate --to-cert`."""
    rotate(
        path=path,
        recovery_private_key=recovery_private_key,
        controller_namespace=controller_namespace,
        commit=commit,
        branch=branch,
        report=False,
        to_cert=to_cert,
        kubeconfig=kubeconfig,
        context=context,
    )
