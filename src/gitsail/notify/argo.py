"""Argo CD notifications: ``argocd-notifications-cm``, subscriptions, triggers, webhooks.

The ConfigMap (in the control namespace) holds:

- ``service.webhook.<name>``: YAML with ``url``, ``headers`` (``[{name, value}]``) and
  ``basicAuth`` (``{username, password}``); string values may reference keys of
  ``argocd-notifications-secret`` as ``$key`` (replaced after the YAML is parsed, so a secret
  never changes the structure). Other service types are reported as unsupported;
- ``template.<name>``: YAML with ``message`` and ``webhook.<service>.{method, path, body}``,
  ``path`` and ``body`` rendered as Go templates over ``.app`` (the Application),
  ``.context`` (the ConfigMap's ``context``), ``.serviceType`` and ``.recipient``;
- ``trigger.<name>``: a list of ``{when, send: [templates], oncePer, description}``;
- ``defaultTriggers``: the triggers of a subscription that names only a service;
- ``context``: a YAML map (``argocdUrl``) given to templates.

``when`` is Argo's expr-lang; gitsail evaluates the subset its catalog triggers use
(``on-sync-succeeded``, ``on-sync-failed``, ``on-health-degraded``, ``on-deployed``,
``on-sync-running``, ``on-sync-status-unknown``, ``on-created``): clauses joined by ``and``,
each ``<path> == 'x'``, ``<path> != nil`` (or ``!= 'x'``), ``<path> in ['a', 'b']``, or
``true``, where ``<path>`` is ``app.a.b`` (``?.`` accepted). Any other expression is
refused: the trigger reports the problem and never fires (``ConfigProblem``).

Subscriptions are Application annotations ``notifications.argoproj.io/subscribe.<trigger>.
<service>: <recipient>[;<recipient>...]``. What has been sent is kept, as Argo does, in the
annotation ``notified.notifications.argoproj.io`` (a JSON map of keys to Unix times): a
condition that becomes true notifies once; without ``oncePer`` it notifies again only after it
has been false; with ``oncePer`` (e.g. the sync revision) once per value, ever.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from gitsail.kinds.gotemplate import GoTemplate, TemplateError
from gitsail.model import Obj
from gitsail.notify.providers import DeliveryError, Request, validate_address
from gitsail.source import redact_text

__all__ = [
    "CONFIGMAP",
    "NOTIFIED_ANNOTATION",
    "SECRET",
    "SUBSCRIBE_PREFIX",
    "ConditionError",
    "NotificationsConfig",
    "Send",
    "compile_path",
    "compile_when",
    "evaluate",
    "parse_config",
    "subscriptions",
    "webhook_request",
]

CONFIGMAP = "argocd-notifications-cm"
SECRET = "argocd-notifications-secret"  # noqa: S105 (the Secret's name)
SUBSCRIBE_PREFIX = "notifications.argoproj.io/subscribe."
NOTIFIED_ANNOTATION = "notified.notifications.argoproj.io"
MAX_NOTIFIED = 200  # entries kept in the annotation (the oldest go first)
MAX_BODY = 256 * 1024
MAX_SUBSCRIPTIONS = 64

_PATH = r"app(?:\??\.[A-Za-z_][A-Za-z0-9_]*)+"
_STRING = r"'[^'\\]*'|\"[^\"\\]*\""
_COMPARE = re.compile(rf"^({_PATH})\s*(==|!=)\s*(nil|true|false|{_STRING})$")
_IN = re.compile(rf"^({_PATH})\s+in\s+\[\s*((?:{_STRING})(?:\s*,\s*(?:{_STRING}))*)?\s*\]$")
_VAR = re.compile(r"\$([A-Za-z0-9_.-]+)")


class ConditionError(ValueError):
    """A ``when`` or ``oncePer`` expression outside the subset gitsail evaluates."""


def compile_path(expr: str) -> Callable[[Obj], Any]:
    """``app.status.sync.revision`` (``?.`` allowed) → a getter; missing → None."""
    expr = expr.strip()
    if not re.fullmatch(_PATH, expr):
        raise ConditionError(f"{expr!r} is not a field of app (app.a.b)")
    names = [n for n in re.split(r"\??\.", expr)[1:]]

    def get(app: Obj) -> Any:
        value: Any = app
        for name in names:
            if not isinstance(value, dict):
                return None
            value = value.get(name)
        return value

    return get


def _literal(text: str) -> Any:
    if text == "nil":
        return None
    if text in ("true", "false"):
        return text == "true"
    return text[1:-1]


def _clause(clause: str) -> Callable[[Obj], bool]:
    if clause == "true":
        return lambda app: True
    if match := _COMPARE.match(clause):
        get, want = compile_path(match[1]), _literal(match[3])
        negate = match[2] == "!="

        def compare(app: Obj) -> bool:
            return bool(get(app) == want) != negate

        return compare
    if match := _IN.match(clause):
        get_in = compile_path(match[1])
        options = {_literal(m) for m in re.findall(_STRING, match[2] or "")}

        def member(app: Obj) -> bool:
            value = get_in(app)
            return isinstance(value, str | bool) and value in options

        return member
    raise ConditionError(f"{clause!r} is not a condition gitsail evaluates")


def compile_when(expr: str) -> Callable[[Obj], bool]:
    """The predicate of a ``when`` expression of the supported subset."""
    text = " ".join(str(expr).split())
    if not text:
        raise ConditionError("an empty condition")
    if re.search(r"\s(or|\|\|)\s|&&|\(|\)", text):
        raise ConditionError(f"{text!r}: only clauses joined by 'and' are evaluated by gitsail")
    checks: list[Callable[[Obj], bool]] = []
    for clause in re.split(r"\s+and\s+", text):
        checks.append(_clause(clause))
    return lambda app: all(check(app) for check in checks)


@dataclass(frozen=True)
class WebhookService:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # headers carry secrets
        return f"WebhookService({self.name!r})"


@dataclass(frozen=True)
class WebhookTemplate:
    method: str = "POST"
    path: str = ""
    body: str = ""


@dataclass(frozen=True)
class Template:
    name: str
    message: str
    webhooks: Mapping[str, WebhookTemplate]


@dataclass(frozen=True)
class Condition:
    when: Callable[[Obj], bool]
    when_text: str
    send: tuple[str, ...]
    once_per: Callable[[Obj], Any] | None = None


@dataclass
class NotificationsConfig:
    services: dict[str, WebhookService] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    triggers: dict[str, tuple[Condition, ...]] = field(default_factory=dict)
    default_triggers: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what is configured and refused
    unsupported_services: set[str] = field(default_factory=set)


def _substitute(value: Any, secrets: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: secrets.get(m[1], m[0]), value)
    if isinstance(value, list):
        return [_substitute(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, secrets) for k, v in value.items()}
    return value


def _yaml(text: object, what: str, problems: list[str]) -> Any:
    try:
        return yaml.safe_load(str(text))
    except yaml.YAMLError:
        problems.append(f"{what}: not YAML")
        return None


def _service(name: str, raw: Any, secrets: Mapping[str, str]) -> WebhookService:
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise ValueError("needs a url")
    raw = _substitute(raw, secrets)
    if raw.get("insecureSkipVerify"):
        raise ValueError("insecureSkipVerify is not supported by gitsail: refused")
    headers: list[tuple[str, str]] = []
    for entry in raw.get("headers") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ValueError("headers must be a list of {name, value}")
        value = str(entry.get("value", ""))
        name = str(entry["name"])
        if any(c in value + name for c in "\r\n\0") or ":" in name:
            raise ValueError(f"header {name[:40]!r} is not allowed")
        headers.append((name, value))
    auth = raw.get("basicAuth")
    if isinstance(auth, dict):
        pair = f"{auth.get('username', '')}:{auth.get('password', '')}".encode()
        headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
    return WebhookService(name=name, url=str(raw["url"]), headers=tuple(headers))


def parse_config(data: Mapping[str, str], secrets: Mapping[str, str]) -> NotificationsConfig:
    """The ConfigMap's ``data`` (with the Secret's decoded data for ``$var``)."""
    cfg = NotificationsConfig()
    for key, value in sorted(data.items()):
        if key.startswith("service."):
            rest = key.removeprefix("service.")
            if not rest.startswith("webhook."):
                cfg.unsupported_services.add(rest.split(".", 1)[-1] if "." in rest else rest)
                cfg.problems.append(f"{key}: only webhook services are sent by gitsail")
                continue
            name = rest.removeprefix("webhook.")
            try:
                cfg.services[name] = _service(name, _yaml(value, key, cfg.problems), secrets)
            except ValueError as exc:
                cfg.problems.append(f"{key}: {exc}")
        elif key.startswith("template."):
            name = key.removeprefix("template.")
            raw = _yaml(value, key, cfg.problems)
            if not isinstance(raw, dict):
                cfg.problems.append(f"{key}: must be a YAML map")
                continue
            hooks: dict[str, WebhookTemplate] = {}
            for service, hook in (raw.get("webhook") or {}).items():
                if isinstance(hook, dict):
                    hooks[str(service)] = WebhookTemplate(
                        method=str(hook.get("method") or "POST").upper(),
                        path=str(hook.get("path") or ""),
                        body=str(hook.get("body") or ""),
                    )
            cfg.templates[name] = Template(name, str(raw.get("message") or ""), hooks)
        elif key.startswith("trigger."):
            name = key.removeprefix("trigger.")
            raw = _yaml(value, key, cfg.problems)
            if not isinstance(raw, list):
                cfg.problems.append(f"{key}: must be a YAML list of conditions")
                continue
            try:
                conditions = []
                for cond in raw:
                    if not isinstance(cond, dict):
                        raise ConditionError("each condition must be a map")
                    once = cond.get("oncePer")
                    conditions.append(
                        Condition(
                            when=compile_when(str(cond.get("when", ""))),
                            when_text=" ".join(str(cond.get("when", "")).split()),
                            send=tuple(str(s) for s in cond.get("send") or []),
                            once_per=compile_path(str(once)) if once else None,
                        )
                    )
            except ConditionError as exc:
                cfg.problems.append(f"{key}: {exc}; the trigger never fires")
                continue
            cfg.triggers[name] = tuple(conditions)
        elif key == "defaultTriggers":
            raw = _yaml(value, key, cfg.problems)
            if isinstance(raw, list):
                cfg.default_triggers = tuple(str(t) for t in raw)
        elif key == "context":
            raw = _yaml(value, key, cfg.problems)
            if isinstance(raw, dict):
                cfg.context = {str(k): v for k, v in raw.items()}
    return cfg


def subscriptions(app: Obj, cfg: NotificationsConfig) -> list[tuple[str, str, tuple[str, ...]]]:
    """(trigger, service, recipients) from the Application's annotations."""
    annotations = (app.get("metadata") or {}).get("annotations") or {}
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(SUBSCRIBE_PREFIX):
            continue
        rest = key.removeprefix(SUBSCRIBE_PREFIX)
        trigger, _, service = rest.partition(".")
        recipients = tuple(r.strip() for r in re.split(r"[;,]", str(value or ""))) or ("",)
        recipients = tuple(dict.fromkeys(r for r in recipients)) or ("",)
        if not service:  # subscribe.<service>: the default triggers
            out += [(t, trigger, recipients) for t in cfg.default_triggers]
        else:
            out.append((trigger, service, recipients))
        if len(out) >= MAX_SUBSCRIPTIONS:
            break
    return out[:MAX_SUBSCRIPTIONS]


@dataclass(frozen=True)
class Send:
    trigger: str
    template: str
    service: str
    recipient: str
    key: str  # the notified-annotation key this send is recorded under


def notified_state(app: Obj) -> dict[str, int]:
    raw = ((app.get("metadata") or {}).get("annotations") or {}).get(NOTIFIED_ANNOTATION)
    try:
        data = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int | float)}


def evaluate(
    app: Obj, cfg: NotificationsConfig, state: Mapping[str, int], now: int
) -> tuple[list[Send], dict[str, int], list[str]]:
    """What to send now, the new notified state, and the problems met (unknown triggers,
    services gitsail does not send)."""
    new = dict(state)
    sends: list[Send] = []
    problems: list[str] = []
    for trigger, service, recipients in subscriptions(app, cfg):
        conditions = cfg.triggers.get(trigger)
        if conditions is None:
            problems.append(f"trigger {trigger!r} is not defined (or refused) in {CONFIGMAP}")
            continue
        if service not in cfg.services:
            problems.append(f"service {service!r} is not a webhook service of {CONFIGMAP}")
            continue
        for index, cond in enumerate(conditions):
            digest = hashlib.sha256(cond.when_text.encode()).hexdigest()[:8]
            try:
                fired = cond.when(app)
                once = cond.once_per(app) if cond.once_per is not None else None
            except Exception as exc:  # a condition never breaks the others
                problems.append(f"trigger {trigger!r}: {exc}")
                continue
            for recipient in recipients:
                base = f"{trigger}:[{index}].{digest}:{service}:{recipient}"
                key = f"{once}:{base}" if once not in (None, "") else base
                if not fired:
                    if cond.once_per is None:
                        new.pop(key, None)
                    continue
                if key in new:
                    continue
                new[key] = now
                sends += [Send(trigger, t, service, recipient, key) for t in cond.send]
    if len(new) > MAX_NOTIFIED:
        new = dict(sorted(new.items(), key=lambda kv: kv[1])[-MAX_NOTIFIED:])
    return sends, new, problems


def webhook_request(cfg: NotificationsConfig, send: Send, app: Obj) -> Request | None:
    """The request of ``send``, or None when its template has no block for the service."""
    service = cfg.services[send.service]
    template = cfg.templates.get(send.template)
    if template is None:
        raise DeliveryError(f"template {send.template!r} is not defined in {CONFIGMAP}")
    hook = template.webhooks.get(send.service)
    if hook is None:
        return None
    data = {
        "app": app,
        "context": {**cfg.context, "notificationType": "webhook"},
        "serviceType": "webhook",
        "recipient": send.recipient,
    }
    try:
        path = GoTemplate(hook.path).render(data, max_output=2048) if hook.path else ""
        body = GoTemplate(hook.body).render(data, max_output=MAX_BODY) if hook.body else ""
    except TemplateError as exc:
        raise DeliveryError(f"template {send.template!r}: {exc}") from None
    url = service.url
    if path:
        url = f"{url.rstrip('/')}/{path.lstrip('/')}"
    validate_address(url)
    if hook.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        raise DeliveryError(f"template {send.template!r}: method {hook.method!r} is not allowed")
    # The body is about the Application: a URL's userinfo in it (a repoURL) is removed.
    return Request(hook.method, url, service.headers, redact_text(body).encode())
