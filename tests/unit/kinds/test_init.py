from __future__ import annotations

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
}


def test_public_api_is_exactly_all() -> None:
    assert set(gitsail.kinds.__all__) == EXPECTED
    public = {n for n in dir(gitsail.kinds) if not n.startswith("_")}
    submodules = {
        "argo_application",
        "errors",
        "flux_gitrepository",
        "flux_kustomization",
        "flux_substitute",
        "records",
        "status",
    }
    assert public - submodules == EXPECTED


def test_unsupported_field_is_a_spec_error_and_both_are_value_errors() -> None:
    assert issubclass(gitsail.kinds.UnsupportedField, gitsail.kinds.SpecError)
    assert issubclass(gitsail.kinds.SpecError, ValueError)
    assert issubclass(gitsail.kinds.SubstitutionError, ValueError)
