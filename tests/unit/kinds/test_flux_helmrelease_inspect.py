"""``diff helmrelease``'s values section: composed values against the released ones, with
every value a Secret gave masked."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from gitsail.kinds.flux_helmrelease import parse_helmrelease
from gitsail.kinds.flux_helmrelease_inspect import (
    MASK,
    InspectError,
    ReleaseDiff,
    _composed,
    mask_fields,
    render_release_diff,
    secret_paths,
    values_changes,
)
from gitsail.kinds.flux_inspect import DRIFTED, FieldChange, ObjectChange, render_changes
from gitsail.policy import DEFAULT_POLICY


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeKube:
    """Only what ``_composed`` reads: ConfigMaps and Secrets by kind and name."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, str, str | None]] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Any:
        self.reads.append((kind, name, namespace))
        return self.objects.get((kind, name))


def _hr(**spec: Any) -> Any:
    return parse_helmrelease(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "redis", "namespace": "apps", "generation": 1},
            "spec": {
                "interval": "1h",
                "chart": {
                    "spec": {
                        "chart": "redis",
                        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
                    }
                },
                **spec,
            },
        }
    )


def test_values_changes_lists_changed_added_and_removed_leaves() -> None:
    changes = values_changes(
        {"architecture": "standalone", "auth": {"enabled": True}, "new": [1, 2]},
        {"architecture": "replication", "auth": {"enabled": True}, "old": "x"},
    )
    shown = {c.path: c.to_dict() for c in changes}
    assert shown == {
        "architecture": {
            "path": "architecture",
            "live": "replication",
            "desired": "standalone",
        },
        "new": {"path": "new", "desired": [1, 2]},
        "old": {"path": "old", "live": "x"},
    }


def test_equal_values_have_no_changes() -> None:
    values = {"a": {"b": [1, {"c": 2}]}, "empty": {}}
    assert values_changes(values, dict(values)) == ()


def test_values_under_a_secret_path_are_masked_on_both_sides() -> None:
    paths = secret_paths({"auth": {"password": "s3cret"}})
    changes = values_changes(
        {"auth": {"password": "n3w-s3cret", "enabled": True}},
        {"auth": {"password": "s3cret", "enabled": False}},
        paths=paths,
    )
    shown = {c.path: c for c in changes}
    assert shown["auth.password"].live == MASK
    assert shown["auth.password"].desired.startswith(MASK)
    assert shown["auth.password"].desired != MASK  # says it changed, not to what
    assert (shown["auth.enabled"].live, shown["auth.enabled"].desired) == (False, True)
    text = render_changes([ObjectChange("values", DRIFTED, changes)])
    assert "s3cret" not in text


def test_a_secret_string_is_masked_wherever_it_appears() -> None:
    changes = values_changes({"copy": ["token-123"]}, {}, strings={"token-123"})
    assert changes[0].desired == MASK


def test_a_map_replaced_by_a_secret_value_is_masked() -> None:
    # the release had a map where a Secret now sets a plain value
    changes = values_changes(
        {"db": "from-secret"}, {"db": {"host": "h"}}, paths=secret_paths({"db": "from-secret"})
    )
    assert [c.to_dict() for c in changes] == [
        {"path": "db", "desired": MASK},
        {"path": "db.host", "live": MASK},
    ]
    assert all("from-secret" not in repr(c.to_dict()) for c in changes)


async def test_composed_attributes_secret_paths_from_valuesfrom() -> None:
    hr = _hr(
        valuesFrom=[
            {"kind": "ConfigMap", "name": "base"},
            {"kind": "Secret", "name": "creds"},
            {"kind": "Secret", "name": "token", "valuesKey": "t", "targetPath": "api.token"},
        ],
        values={"auth": {"enabled": True}},
    )
    kube = FakeKube(
        {
            ("ConfigMap", "base"): {"data": {"values.yaml": "architecture: replication\n"}},
            ("Secret", "creds"): {
                "data": {"values.yaml": _b64(yaml.safe_dump({"auth": {"password": "pw"}}))}
            },
            ("Secret", "token"): {"data": {"t": _b64("tok")}},
        }
    )
    values, paths, strings = await _composed(kube, hr, DEFAULT_POLICY)  # type: ignore[arg-type]
    assert values == {
        "architecture": "replication",
        "auth": {"password": "pw", "enabled": True},
        "api": {"token": "tok"},
    }
    assert paths == {("auth", "password"), ("api", "token")}
    assert {"pw", "tok"} <= strings
    assert {r[2] for r in kube.reads} == {"apps"}  # read in the release's namespace only
    changes = values_changes(values, {}, paths=paths, strings=strings)
    out = render_changes([ObjectChange("values", DRIFTED, changes)])
    assert "replication" in out
    assert "pw" not in out.replace("password", "")
    assert "tok" not in out.replace("token", "")


async def test_composed_missing_reference_is_an_inspect_error_naming_it() -> None:
    hr = _hr(valuesFrom=[{"kind": "Secret", "name": "gone"}])
    with pytest.raises(InspectError, match="Secret 'gone'"):
        await _composed(FakeKube({}), hr, DEFAULT_POLICY)  # type: ignore[arg-type]


def test_object_fields_holding_a_secret_string_are_masked() -> None:
    changes = (
        FieldChange("data.extra", "old-s3cret", "new-s3cret"),
        FieldChange("spec.args", ["--token=new-s3cret"], 1),
        FieldChange("data.color", "red", "blue"),
    )
    masked = mask_fields(changes, {"old-s3cret", "new-s3cret"})
    assert [c.to_dict() for c in masked] == [
        {"path": "data.extra", "live": MASK, "desired": MASK + " (changed)"},
        {"path": "spec.args", "live": MASK, "desired": 1},
        {"path": "data.color", "live": "red", "desired": "blue"},
    ]


def test_render_release_diff_puts_values_first_then_objects() -> None:
    found = ReleaseDiff(
        values=(FieldChange("architecture", "standalone", "replication"),),
        objects=(ObjectChange("ConfigMap/apps/web-other", DRIFTED, ()),),
    )
    assert found.differs
    assert render_release_diff(found) == (
        "values\n\narchitecture\n  ± value change\n    - standalone\n    + replication\n\n"
        "► ConfigMap/apps/web-other drifted\n"
    )
    assert render_release_diff(ReleaseDiff()) == ""
    assert not ReleaseDiff().differs
