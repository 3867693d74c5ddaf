"""CEL health check expressions and readyExpr, as Flux documents them."""

from __future__ import annotations

import pytest

from gitsail.kinds.flux_cel import (
    MAX_EXPRESSION,
    HealthExpressions,
    compile_expression,
    ready_by_expression,
)
from gitsail.kinds.records import HealthCheckExpr
from gitsail.kinds.status import Stalled

SEALED = HealthCheckExpr(
    api_version="bitnami.com/v1alpha1",
    kind="SealedSecret",
    failed="status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'False')",
    current="status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'True')",
)


def sealed(status: str | None) -> dict[str, object]:
    obj: dict[str, object] = {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret"}
    if status is not None:
        obj["status"] = {"conditions": [{"type": "Synced", "status": status}]}
    return obj


@pytest.mark.parametrize(
    ("status", "word"),
    [("True", "Current"), ("False", "Failed"), ("Unknown", "InProgress"), (None, "InProgress")],
)
def test_the_documented_sealed_secret_expressions(status: str | None, word: str) -> None:
    assert HealthExpressions([SEALED]).status(sealed(status)) == word


def test_in_progress_is_evaluated_before_failed_and_current() -> None:
    expr = HealthCheckExpr("x.io/v1", "X", current="true", in_progress="true", failed="true")
    assert HealthExpressions([expr]).status({"apiVersion": "x.io/v1", "kind": "X"}) == "InProgress"


def test_other_kinds_are_left_to_kstatus() -> None:
    exprs = HealthExpressions([SEALED])
    assert exprs.status({"apiVersion": "apps/v1", "kind": "Deployment"}) is None
    assert exprs.status({"apiVersion": "bitnami.com/v1", "kind": "SealedSecret"}) is None
    assert not HealthExpressions([])


def test_a_non_boolean_result_is_not_current() -> None:
    expr = HealthCheckExpr("x.io/v1", "X", current="'yes'")
    assert HealthExpressions([expr]).status({"apiVersion": "x.io/v1", "kind": "X"}) == "InProgress"


@pytest.mark.parametrize("text", ["status.((", "a" * (MAX_EXPRESSION + 1)])
def test_an_expression_that_cannot_compile_is_stalled(text: str) -> None:
    with pytest.raises(Stalled, match=r"spec.healthCheckExprs\[0\].current"):
        compile_expression(text, "spec.healthCheckExprs[0].current")


def test_ready_expr_sees_dep_and_self() -> None:
    program = compile_expression(
        "dep.metadata.labels['v'] == self.metadata.labels['v']", "readyExpr"
    )
    one = {"metadata": {"labels": {"v": "1"}}}
    two = {"metadata": {"labels": {"v": "2"}}}
    assert ready_by_expression(program, one, one) is True
    assert ready_by_expression(program, one, two) is False
    assert ready_by_expression(program, {"metadata": {}}, one) is False  # error: not ready
