"""The Vault Agent injector's mutation: a pod with ``vault.hashicorp.com/`` annotations in,
the JSONPatch that adds the agent out — shaped as HashiCorp's ``vault-k8s`` injector does it.

Pure: dicts in, dicts out, no I/O (the HTTPS webhook around it is
``gitsail.controller.vault_injector``).

**When.** A pod is mutated when ``vault.hashicorp.com/agent-inject`` parses as true (Go's
``strconv.ParseBool`` spellings) and ``agent-inject-status`` is not ``injected``
(``update`` asks for a new mutation); a pod that is no longer Pending is left alone. Any other
pod gets no patch at all (``pod_patch`` answers ``[]``).

**What.** In vault-k8s' order, one JSONPatch (RFC 6902) of ``add`` operations:

1. volumes ``home-init`` (when pre-populating) and ``home-sidecar`` (unless
   ``agent-pre-populate-only``): the agents' home with the token sink, then ``vault-secrets``:
   all three ``emptyDir: {medium: Memory}``;
2. a ``vault-secrets`` mount at ``/vault/secrets`` in every app container;
3. the init container ``vault-agent-init`` (``exit_after_auth: true``), appended to the init
   containers, or first with ``agent-init-first``; existing init containers get the mount too;
4. the sidecar ``vault-agent`` (unless ``agent-pre-populate-only``);
5. the annotation ``vault.hashicorp.com/agent-inject-status: injected``.

Both agents run ``/bin/sh -ec 'echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json &&
vault agent -config=/home/vault/config.json'``; ``VAULT_CONFIG`` is the base64 of the agent's
JSON configuration (``agent_config``): Kubernetes auto-auth with the role and the auth mount
path, a file sink ``/home/vault/.vault-token``, and one template per
``agent-inject-secret-<file>`` rendered to ``/vault/secrets/<file>`` (its
``agent-inject-template-<file>`` body, else the default ``map`` template of the secret's path).
They mount the pod's ServiceAccount token volume read-only (found as vault-k8s finds it: the
first app-container mount whose path contains ``serviceaccount``), and the token path in the
auth config points into it. Secret values never pass through here: the agent fetches them in
the pod; the patch carries paths, templates and the role only.

**One departure**, for vault-k8s' most reported trap: a pod owned by a Job (a Job's or a
CronJob's pod) gets ``agent-pre-populate-only`` unless it sets that annotation itself — with a
sidecar that never exits, the Job never completes.

**Errors.** An annotated pod whose annotations cannot be honoured (a bad boolean, no role, no
ServiceAccount token mount, a file name that escapes ``/vault/secrets``) raises
``InjectError``; the webhook refuses such a pod with that message, as vault-k8s does — a pod
that asked for secrets never starts without them.

Since ``agent-inject-status: update`` may arrive on a pod whose spec already carries the
agents (a copy of an injected pod), containers and volumes of the injector's names that are
already there are replaced in place instead of being added twice.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gitsail.model import Obj

__all__ = [
    "DEFAULT_IMAGE",
    "PREFIX",
    "InjectError",
    "InjectorDefaults",
    "agent_config",
    "go_json",
    "parse_bool",
    "pod_patch",
    "should_inject",
]

PREFIX = "vault.hashicorp.com/"
INJECT = PREFIX + "agent-inject"
STATUS = PREFIX + "agent-inject-status"
SECRET_PREFIX = PREFIX + "agent-inject-secret-"
TEMPLATE_PREFIX = PREFIX + "agent-inject-template-"
FILE_PREFIX = PREFIX + "agent-inject-file-"
PERMS_PREFIX = PREFIX + "agent-inject-perms-"
COMMAND_PREFIX = PREFIX + "agent-inject-command-"

# vault-k8s' default agent image at the commit read (shared/reference/secrets.md, 3.1).
DEFAULT_IMAGE = "hashicorp/vault:2.0.4"
SECRETS_PATH = "/vault/secrets"
SECRETS_VOLUME = "vault-secrets"
HOME_PATH = "/home/vault"
HOME_INIT = "home-init"
HOME_SIDECAR = "home-sidecar"
INIT_NAME = "vault-agent-init"
SIDECAR_NAME = "vault-agent"
TOKEN_FILE = "/home/vault/.vault-token"  # noqa: S105 (a path, not a token)
PID_FILE = "/home/vault/.pid"
CONTAINER_ARG = (
    "echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && "
    "vault agent -config=/home/vault/config.json"
)
MAP_TEMPLATE = (
    '{{ with secret "%s" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}'
)
JSON_TEMPLATE = '{{ with secret "%s" }}{{ .Data | toJSON }}\n{{ end }}'

# Limits on what one pod may ask for (the pod's annotations are tenant input; the apiserver
# caps all annotations at 256 KiB together).
MAX_SECRETS = 64

# A Kubernetes quantity (resource.ParseQuantity's grammar), or empty for "none".
_QUANTITY = re.compile(r"(|[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?)")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class InjectError(ValueError):
    """The pod asked for injection with annotations that cannot be honoured."""


@dataclass(frozen=True)
class InjectorDefaults:
    """The injector's own settings (vault-k8s' ``AGENT_INJECT_*`` flags), overridable per pod."""

    vault_address: str = "https://vault.vault.svc:8200"
    image: str = DEFAULT_IMAGE
    auth_type: str = "kubernetes"
    auth_path: str = "auth/kubernetes"
    log_level: str = "info"
    log_format: str = "standard"
    run_as_user: int = 100
    run_as_group: int = 1000
    set_security_context: bool = True
    limits_cpu: str = "500m"
    limits_mem: str = "128Mi"
    requests_cpu: str = "250m"
    requests_mem: str = "64Mi"
    exit_on_retry_failure: bool = True
    default_template: str = "map"


def parse_bool(value: str, what: str) -> bool:
    """Go's ``strconv.ParseBool``; anything else is refused with the annotation's name."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InjectError(f"annotation {what}: {value[:40]!r} is not a boolean (true or false)")


def _annotations(pod: Obj) -> Mapping[str, str]:
    meta = pod.get("metadata") or {}
    ann = meta.get("annotations") or {}
    return ann if isinstance(ann, dict) else {}


def should_inject(pod: Obj) -> bool:
    """vault-k8s' trigger; raises ``InjectError`` when ``agent-inject`` is not a boolean."""
    ann = _annotations(pod)
    raw = ann.get(INJECT)
    if raw is None or not parse_bool(str(raw), INJECT):
        return False
    phase = (pod.get("status") or {}).get("phase") or ""
    if phase not in ("", "Pending"):
        return False
    return ann.get(STATUS) != "injected"


@dataclass(frozen=True)
class _Secret:
    name: str
    path: str
    template: str
    file: str
    perms: str
    command: str


@dataclass(frozen=True)
class _TokenVolume:
    name: str
    mount_path: str
    token_path: str


@dataclass(frozen=True)
class _Agent:
    role: str
    address: str
    auth_path: str
    namespace: str
    ca_cert: str
    tls_skip_verify: bool
    image: str
    pre_populate: bool
    pre_populate_only: bool
    init_first: bool
    secrets: tuple[_Secret, ...]
    token: _TokenVolume
    containers: frozenset[str] | None  # app containers that get the mount (None: all)
    resources: Obj


def _flag(ann: Mapping[str, str], key: str, default: bool) -> bool:
    raw = ann.get(PREFIX + key)
    return default if raw is None else parse_bool(str(raw), PREFIX + key)


def _secrets(ann: Mapping[str, str], defaults: InjectorDefaults) -> tuple[_Secret, ...]:
    style = ann.get(PREFIX + "agent-inject-default-template", defaults.default_template)
    if style not in ("map", "json"):
        raise InjectError(
            f"annotation {PREFIX}agent-inject-default-template: {style[:20]!r} is not map or json"
        )
    out = []
    for key in sorted(ann):
        if not key.startswith(SECRET_PREFIX):
            continue
        name = key[len(SECRET_PREFIX) :]
        path = str(ann[key])
        if not name:
            continue
        template = ann.get(TEMPLATE_PREFIX + name)
        if template is None:
            template = (MAP_TEMPLATE if style == "map" else JSON_TEMPLATE) % path
        file = str(ann.get(FILE_PREFIX + name, ""))
        target = posixpath.normpath(posixpath.join(SECRETS_PATH, file or name))
        if not target.startswith(SECRETS_PATH + "/"):
            raise InjectError(f"secret file {(file or name)[:60]!r} is outside {SECRETS_PATH}")
        out.append(
            _Secret(
                name=name,
                path=path,
                template=str(template),
                file=file,
                perms=str(ann.get(PERMS_PREFIX + name, "")),
                command=str(ann.get(COMMAND_PREFIX + name, "")),
            )
        )
    if len(out) > MAX_SECRETS:
        raise InjectError(f"{len(out)} agent-inject-secret annotations: at most {MAX_SECRETS}")
    return tuple(out)


def _token_volume(spec: Obj) -> _TokenVolume:
    for container in spec.get("containers") or []:
        for mount in container.get("volumeMounts") or []:
            if "serviceaccount" in str(mount.get("mountPath", "")):
                return _TokenVolume(str(mount["name"]), str(mount["mountPath"]), "token")
    raise InjectError(
        "no ServiceAccount token volume mount in the pod (automountServiceAccountToken off?): "
        "the agent needs it to log in"
    )


def _owned_by_job(pod: Obj) -> bool:
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    return any(
        isinstance(o, dict) and o.get("kind") == "Job" and o.get("apiVersion") == "batch/v1"
        for o in owners
    )


def _parse(pod: Obj, defaults: InjectorDefaults) -> _Agent:
    ann = _annotations(pod)
    role = str(ann.get(PREFIX + "role", ""))
    auth_type = str(ann.get(PREFIX + "auth-type", defaults.auth_type))
    if auth_type == "kubernetes" and not role:
        raise InjectError(f"annotation {PREFIX}role is missing: the Kubernetes auth role to use")
    address = str(ann.get(PREFIX + "service", defaults.vault_address))
    if not address:
        raise InjectError(f"no Vault address: set {PREFIX}service or the injector's default")
    pre_populate = _flag(ann, "agent-pre-populate", True)
    # A Job's pod with a sidecar never completes (vault-k8s #120, #133): unless the pod says
    # otherwise, a pod owned by a Job gets the init container only.
    pre_populate_only = _flag(ann, "agent-pre-populate-only", _owned_by_job(pod))
    return _Agent(
        role=role,
        address=address,
        auth_path=str(ann.get(PREFIX + "auth-path", defaults.auth_path)),
        namespace=str(ann.get(PREFIX + "namespace", "")),
        ca_cert=str(ann.get(PREFIX + "ca-cert", "")),
        tls_skip_verify=_flag(ann, "tls-skip-verify", False),
        image=str(ann.get(PREFIX + "agent-image", defaults.image)) or defaults.image,
        pre_populate=pre_populate or pre_populate_only,
        pre_populate_only=pre_populate_only,
        init_first=_flag(ann, "agent-init-first", False),
        secrets=_secrets(ann, defaults),
        token=_token_volume(pod.get("spec") or {}),
        containers=_containers(ann),
        resources=_resources(ann, defaults),
    )


def _containers(ann: Mapping[str, str]) -> frozenset[str] | None:
    raw = ann.get(PREFIX + "agent-inject-containers")
    if raw is None:
        return None
    return frozenset(filter(None, (c.strip() for c in str(raw).split(","))))


def _quantity(ann: Mapping[str, str], key: str, default: str) -> str:
    value = str(ann.get(PREFIX + key, default))
    if not _QUANTITY.fullmatch(value):
        raise InjectError(f"annotation {PREFIX}{key}: {value[:40]!r} is not a quantity")
    return value


def _resources(ann: Mapping[str, str], defaults: InjectorDefaults) -> Obj:
    """vault-k8s' ``agent-limits-*`` / ``agent-requests-*``; an empty value drops the entry."""
    out: Obj = {}
    for kind, cpu, mem in (
        ("limits", defaults.limits_cpu, defaults.limits_mem),
        ("requests", defaults.requests_cpu, defaults.requests_mem),
    ):
        entry = {
            "cpu": _quantity(ann, f"agent-{kind}-cpu", cpu),
            "memory": _quantity(ann, f"agent-{kind}-mem", mem),
        }
        out[kind] = {k: v for k, v in entry.items() if v}
    return out


def go_json(value: Any) -> str:
    """JSON as Go's ``encoding/json`` writes it: compact, ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _config(agent: _Agent, defaults: InjectorDefaults, *, init: bool) -> Obj:
    vault: Obj = {"address": agent.address}
    if agent.ca_cert:
        vault["ca_cert"] = agent.ca_cert
    if agent.tls_skip_verify:
        vault["tls_skip_verify"] = True
    method: Obj = {"type": defaults.auth_type, "mount_path": agent.auth_path}
    if agent.namespace:
        method["namespace"] = agent.namespace
    method["config"] = {
        "role": agent.role,
        "token_path": f"{agent.token.mount_path}/{agent.token.token_path}",
    }
    config: Obj = {
        "auto_auth": {
            "method": method,
            "sink": [{"type": "file", "config": {"path": TOKEN_FILE}}],
        },
        "exit_after_auth": init,
        "pid_file": PID_FILE,
        "vault": vault,
    }
    templates = []
    for secret in agent.secrets:
        template: Obj = {
            "destination": (
                posixpath.join(SECRETS_PATH, posixpath.normpath(secret.file))
                if secret.file
                else f"{SECRETS_PATH}/{secret.name}"
            ),
            "contents": secret.template,
            "left_delimiter": "{{",
            "right_delimiter": "}}",
        }
        if secret.command:
            template["command"] = secret.command
        if secret.perms:
            template["perms"] = secret.perms
        templates.append(template)
    if templates:
        config["template"] = templates
    config["template_config"] = {"exit_on_retry_failure": defaults.exit_on_retry_failure}
    return config


def agent_config(
    pod: Obj, defaults: InjectorDefaults = InjectorDefaults(), *, init: bool = False
) -> Obj:
    """The agent's configuration for ``pod`` (the init container's when ``init``)."""
    return _config(_parse(pod, defaults), defaults, init=init)


def _memory_volume(name: str) -> Obj:
    return {"name": name, "emptyDir": {"medium": "Memory"}}


def _container(agent: _Agent, defaults: InjectorDefaults, *, init: bool) -> Obj:
    config = go_json(_config(agent, defaults, init=init)).encode()
    container: Obj = {
        "name": INIT_NAME if init else SIDECAR_NAME,
        "image": agent.image,
        "command": ["/bin/sh", "-ec"],
        "args": [CONTAINER_ARG],
        "env": [
            {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "VAULT_LOG_LEVEL", "value": defaults.log_level},
            {"name": "VAULT_LOG_FORMAT", "value": defaults.log_format},
            {"name": "VAULT_CONFIG", "value": base64.b64encode(config).decode()},
        ],
        "resources": agent.resources,
        # vault-k8s mounts the init container's home first, the sidecar's after the token.
        "volumeMounts": [
            *([{"name": HOME_INIT, "mountPath": HOME_PATH}] if init else []),
            {"name": agent.token.name, "mountPath": agent.token.mount_path, "readOnly": True},
            *([] if init else [{"name": HOME_SIDECAR, "mountPath": HOME_PATH}]),
            {"name": SECRETS_VOLUME, "mountPath": SECRETS_PATH},
        ],
    }
    if not init:
        container["lifecycle"] = {}
    if defaults.set_security_context:
        container["securityContext"] = {
            "runAsUser": defaults.run_as_user,
            "runAsGroup": defaults.run_as_group,
            "runAsNonRoot": defaults.run_as_user != 0 and defaults.run_as_group != 0,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "allowPrivilegeEscalation": False,
        }
    return container


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class _Patch:
    """Builds ``add``/``replace`` operations the way vault-k8s' helpers do: the first item of
    a missing list creates the list, the others append with ``/-``; an item whose name is
    already in the list (a re-injection) replaces it in place."""

    def __init__(self) -> None:
        self.ops: list[Obj] = []

    def items(self, current: list[Obj], new: list[Obj], path: str) -> None:
        names = [str(item.get("name")) for item in current]
        empty = not current
        for item in new:
            if item["name"] in names:
                index = names.index(item["name"])
                self.ops.append({"op": "replace", "path": f"{path}/{index}", "value": item})
            elif empty:
                self.ops.append({"op": "add", "path": path, "value": [item]})
                empty = False
                names.append(item["name"])
            else:
                self.ops.append({"op": "add", "path": f"{path}/-", "value": item})
                names.append(item["name"])

    def mounts(self, container: Obj, path: str) -> None:
        current = container.get("volumeMounts") or []
        if any(m.get("name") == SECRETS_VOLUME for m in current):
            return
        self.items(current, [{"name": SECRETS_VOLUME, "mountPath": SECRETS_PATH}], path)


def pod_patch(pod: Obj, defaults: InjectorDefaults = InjectorDefaults()) -> list[Obj]:
    """The JSONPatch that injects the agent into ``pod``; ``[]`` when it asks for none."""
    if not should_inject(pod):
        return []
    agent = _parse(pod, defaults)
    spec = pod.get("spec") or {}
    volumes = spec.get("volumes") or []
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    patch = _Patch()

    homes = []
    if agent.pre_populate:
        homes.append(_memory_volume(HOME_INIT))
    if not agent.pre_populate_only:
        homes.append(_memory_volume(HOME_SIDECAR))
    patch.items(volumes, [*homes, _memory_volume(SECRETS_VOLUME)], "/spec/volumes")

    for i, container in enumerate(containers):
        wanted = agent.containers is None or container.get("name") in agent.containers
        if container.get("name") != SIDECAR_NAME and wanted:
            patch.mounts(container, f"/spec/containers/{i}/volumeMounts")

    if agent.pre_populate:
        init = _container(agent, defaults, init=True)
        others = [c for c in inits if c.get("name") != INIT_NAME]
        if agent.init_first:
            if inits:
                patch.ops.append({"op": "remove", "path": "/spec/initContainers"})
            ordered = [init, *others]
            patch.items([], ordered, "/spec/initContainers")
        else:
            patch.items(inits, [init], "/spec/initContainers")
            ordered = inits
        for i, container in enumerate(ordered):
            if container.get("name") != INIT_NAME:
                patch.mounts(container, f"/spec/initContainers/{i}/volumeMounts")

    if not agent.pre_populate_only:
        patch.items(containers, [_container(agent, defaults, init=False)], "/spec/containers")

    if not _annotations(pod):
        patch.ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    patch.ops.append(
        {"op": "add", "path": "/metadata/annotations/" + _escape(STATUS), "value": "injected"}
    )
    return patch.ops
