"""The part of Go text/template that SealedSecret ``template.data`` entries use in practice.

Supported actions: ``{{ .key }}`` (the value), ``{{ index . "key" }}``, ``{{ toJson .key }}``,
``{{ .key | toJson }}``, and the pipes ``b64enc``, ``b64dec``, ``upper``, ``lower``, ``trim``,
``quote``. Anything else is an error naming the action, never a value.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping

from gitsail.secrets.sealing import SealingError

__all__ = ["render"]

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_FIELD = re.compile(r"^\.([A-Za-z0-9_]+)$")
_INDEX = re.compile(r'^index\s+\.\s+"([^"\\]+)"$')

_FUNCS: dict[str, Callable[[str], str]] = {
    "toJson": lambda v: json.dumps(v),
    "b64enc": lambda v: base64.b64encode(v.encode()).decode(),
    "b64dec": lambda v: base64.b64decode(v).decode(errors="replace"),
    "upper": str.upper,
    "lower": str.lower,
    "trim": str.strip,
    "quote": lambda v: json.dumps(v),
}


def _operand(text: str, context: Mapping[str, str]) -> str:
    match = _FIELD.match(text) or _INDEX.match(text)
    if match is None:
        raise SealingError(f"unsupported template action {text!r}")
    key = match.group(1)
    if key not in context:
        raise SealingError(f"template refers to {key!r}, which is not a sealed key")
    return context[key]


def _evaluate(action: str, context: Mapping[str, str]) -> str:
    stages = [s.strip() for s in action.split("|")]
    first = stages[0].split(None, 1)
    if first and first[0] in _FUNCS and len(first) == 2:
        value = _FUNCS[first[0]](_operand(first[1], context))
    else:
        value = _operand(stages[0], context)
    for stage in stages[1:]:
        func = _FUNCS.get(stage)
        if func is None:
            raise SealingError(f"unsupported template function {stage!r}")
        value = func(value)
    return value


def render(template: str, context: Mapping[str, str]) -> str:
    """``template`` with every action replaced; raises SealingError on an unsupported one."""
    return _ACTION.sub(lambda m: _evaluate(m.group(1), context), template)
