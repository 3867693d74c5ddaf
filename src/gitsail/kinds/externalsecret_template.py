"""ESO's template engine v2 on gitsail's Go template subset (``kinds/gotemplate.py``).

The context holds every fetched key as a string (``{{ .password }}``); ``missingkey=error``
as ESO sets it. Functions: the Sprig ones gotemplate knows plus those ESO users rely on
(``b64enc``, ``b64dec``, ``fromJson``, ``toJson``, ``fromYaml``, ``toYaml``, ``sha256sum``,
``upper``/``lower``, ``trim``, ``replace``, ``quote``, ``default``, ``indent``/``nindent``,
``htpasswd``-free). Errors name the template's key and the template problem, never a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from gitsail.kinds.gotemplate import FUNCTIONS, GoTemplate, TemplateError

__all__ = ["ESO_FUNCTIONS", "render_template"]


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else json.dumps(value)


def _b64dec(value: Any) -> str:
    try:
        return base64.b64decode(_s(value), validate=True).decode(errors="replace")
    except (binascii.Error, ValueError):
        raise TemplateError("b64dec: the argument is not base64") from None


def _from_json(value: Any) -> Any:
    try:
        return json.loads(_s(value))
    except ValueError:
        raise TemplateError("fromJson: the argument is not JSON") from None


def _from_yaml(value: Any) -> Any:
    try:
        return yaml.safe_load(_s(value))
    except yaml.YAMLError:
        raise TemplateError("fromYaml: the argument is not YAML") from None


def _indent(width: Any, text: Any) -> str:
    pad = " " * int(width)
    return "\n".join(pad + line for line in _s(text).split("\n"))


ESO_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **FUNCTIONS,
    "b64enc": lambda v: base64.b64encode(_s(v).encode()).decode(),
    "b64dec": _b64dec,
    "fromJson": _from_json,
    "fromYaml": _from_yaml,
    "toJson": lambda v: json.dumps(v, separators=(",", ":")),
    "toYaml": lambda v: yaml.safe_dump(v, sort_keys=True).rstrip("\n"),
    "sha256sum": lambda v: hashlib.sha256(_s(v).encode()).hexdigest(),
    "indent": _indent,
    "nindent": lambda w, t: "\n" + _indent(w, t),
    "trimAll": lambda chars, s: _s(s).strip(_s(chars)),
    "repeat": lambda n, s: _s(s) * min(int(n), 10_000),
}


def render_template(source: str, values: Mapping[str, bytes], *, where: str) -> bytes:
    """One template of ``target.template.data`` (or a ``transform``) rendered over the
    fetched values; ``TemplateError`` names ``where``, not the values."""
    context = {k: v.decode(errors="replace") for k, v in values.items()}
    try:
        return GoTemplate(source, ESO_FUNCTIONS).render(context, missingkey="error").encode()
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise TemplateError(f"{where}: {type(exc).__name__} while rendering") from None
