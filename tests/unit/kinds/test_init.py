from __future__ import annotations

import pkgutil

import gitsail.kinds

EXPECTED = {
    "CommonMetadata",
    "DeletionPolicy",
    "Dependency",
    "GitRepository",
    "HealthCheck",
    "HealthCheckExpr",
    "ImageOverride",
    "Include",
    "Kustomization",
    "ObjectRef",
    "Patch",
    "PatchTarget",
    "RefKind",
    "RenderSpec",
    "RevisionRef",
    "SourceRef",
    "SpecError",
    "SubstituteSource",
    "SubstitutionError",
    "SyncPolicy",
    "UnsupportedField",
    "expand",
    "parse_git_repository",
    "parse_kustomization",
    "substitute_objects",
    "variables",
    "variables_from",
    "Condition",
    "ReconcileError",
    "Stalled",
    "Transient",
    "failure_conditions",
    "put_condition",
    "ready_conditions",
    "Receiver",
    "ReceiverReconciler",
    "parse_receiver",
    "webhook_path",
}


def test_public_api_is_exactly_all() -> None:
    assert set(gitsail.kinds.__all__) == EXPECTED
    public = {n for n in dir(gitsail.kinds) if not n.startswith("_")}
    # Submodules show up as attributes once anything imported them (other tests do).
    submodules = {m.name for m in pkgutil.iter_modules(gitsail.kinds.__path__)}
    assert public - submodules == EXPECTED


def test_unsupported_field_is_a_spec_error_and_both_are_value_errors() -> None:
    assert issubclass(gitsail.kinds.UnsupportedField, gitsail.kinds.SpecError)
    assert issubclass(gitsail.kinds.SpecError, ValueError)
    assert issubclass(gitsail.kinds.SubstitutionError, ValueError)
