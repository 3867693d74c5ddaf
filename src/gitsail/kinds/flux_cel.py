"""CEL in Flux Kustomizations: ``healthCheckExprs`` and ``dependsOn[].readyExpr``.

Expressions are compiled once per pass with ``common-expression-language`` (Python bindings
of a Rust CEL implementation) and evaluated against plain dicts. CEL has no loops, no I/O
and no side effects; an expression is bounded to ``MAX_EXPRESSION`` characters.

``healthCheckExprs`` (kustomize-controller ``docs/spec/v1/kustomizations.md``, "Health
check expressions"): an entry applies to the objects of its ``apiVersion`` and ``kind``
and replaces their kstatus reading. The object's top-level fields are the variables
(``status``, ``metadata``, ``spec``...). ``inProgress`` is evaluated first, then ``failed``,
then ``current``; the first that is ``true`` decides (InProgress, Failed, Current), and
none true means InProgress. An expression that cannot be evaluated (a field the object
does not have yet, say ``status`` before the operator wrote it) also means InProgress, so
the health check waits until its timeout, as Flux documents.

``readyExpr``: evaluated with ``dep`` (the dependency) and ``self`` (the Kustomization);
``true`` means ready. It replaces the built-in readiness check, as in Flux by default.

An expression that does not compile, or a result that is not a boolean, is a spec error
(``Stalled``): it will not fix itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitsail.kinds.records import HealthCheckExpr
from gitsail.kinds.status import Stalled

if TYPE_CHECKING:
    import cel  # imported on first use: its package loads a CLI and prompt_toolkit

__all__ = ["MAX_EXPRESSION", "HealthExpressions", "compile_expression", "ready_by_expression"]

MAX_EXPRESSION = 4096
_REASON = "ReconciliationFailed"


def compile_expression(text: str, where: str) -> cel.Program:
    """A compiled CEL program; ``Stalled`` naming ``where`` when it does not compile."""
    if len(text) > MAX_EXPRESSION:
        raise Stalled(_REASON, f"{where}: longer than {MAX_EXPRESSION} characters")
    try:
        import cel

        return cel.compile(text)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise Stalled(_REASON, f"{where}: invalid CEL expression: {exc}") from exc


def _run(program: cel.Program, context: Mapping[str, Any]) -> bool | None:
    """The program's boolean result; None when it cannot be evaluated on this input."""
    try:
        result = program.execute(dict(context))
    except (ValueError, RuntimeError, TypeError, KeyError):
        return None
    return result if isinstance(result, bool) else None


@dataclass(frozen=True)
class _Compiled:
    current: cel.Program
    in_progress: cel.Program | None
    failed: cel.Program | None


class HealthExpressions:
    """The ``healthCheckExprs`` of one Kustomization, compiled."""

    def __init__(self, exprs: Sequence[HealthCheckExpr]) -> None:
        self._by_kind: dict[tuple[str, str], _Compiled] = {}
        for i, expr in enumerate(exprs):
            where = f"spec.healthCheckExprs[{i}]"
            self._by_kind[(expr.api_version, expr.kind)] = _Compiled(
                current=compile_expression(expr.current, f"{where}.current"),
                in_progress=(
                    compile_expression(expr.in_progress, f"{where}.inProgress")
                    if expr.in_progress
                    else None
                ),
                failed=(
                    compile_expression(expr.failed, f"{where}.failed") if expr.failed else None
                ),
            )

    def __bool__(self) -> bool:
        return bool(self._by_kind)

    def status(self, obj: Mapping[str, Any]) -> str | None:
        """kstatus's word for ``obj`` (Current, InProgress, Failed), or None when no
        expression is defined for its apiVersion and kind."""
        compiled = self._by_kind.get((str(obj.get("apiVersion", "")), str(obj.get("kind", ""))))
        if compiled is None:
            return None
        for program, word in (
            (compiled.in_progress, "InProgress"),
            (compiled.failed, "Failed"),
            (compiled.current, "Current"),
        ):
            if program is not None and _run(program, obj) is True:
                return word
        return "InProgress"


def ready_by_expression(
    program: cel.Program, dep: Mapping[str, Any], self_obj: Mapping[str, Any]
) -> bool:
    """Whether ``readyExpr`` says the dependency is ready (an error is "not ready")."""
    return _run(program, {"dep": dict(dep), "self": dict(self_obj)}) is True
