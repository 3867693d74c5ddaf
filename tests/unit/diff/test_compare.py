from __future__ import annotations

import base64
import random
import string

import pytest

from gitsail.diff import DiffError, IgnoreRule, diff_resource
from gitsail.diff.compare import changed_paths
from gitsail.model import ResourceKey

from .objects import desired_deployment, live_deployment, scaled_by_kubectl, secret


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_dry_run_defaults_and_server_bookkeeping_are_not_differences() -> None:
    diff = diff_resource(desired_deployment(), live_deployment())
    assert diff.status == "Synced"
    assert diff.synced
    assert diff.changed_paths == ()
    assert diff.unified == ""
    assert diff.key == ResourceKey("apps", "Deployment", "shop", "web")
    assert not diff.missing
    assert not diff.requires_pruning


def test_changed_image_is_reported_by_json_pointer_and_unified_diff() -> None:
    desired = desired_deployment()
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/web:1.5.0"
    diff = diff_resource(desired, live_deployment())
    assert diff.status == "OutOfSync"
    assert diff.changed_paths == ("/spec/template/spec/containers/0/image",)
    assert "\n-      - image: ghcr.io/acme/web:1.4.2\n" in diff.unified
    assert "\n+      - image: ghcr.io/acme/web:1.5.0\n" in diff.unified
    assert diff.unified.startswith("--- live apps/Deployment shop/web\n+++ desired apps/")


def test_field_added_out_of_band_is_a_difference_at_its_root() -> None:
    live = live_deployment()
    live["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = "2026-05-04T10:00:00Z"
    live["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd", "zone": "a"}
    diff = diff_resource(desired_deployment(), live)
    assert diff.changed_paths == (
        "/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
        "/spec/template/spec/nodeSelector",
    )


def test_missing_resource_is_out_of_sync_and_shows_the_whole_object() -> None:
    diff = diff_resource(desired_deployment(), None)
    assert diff.missing
    assert diff.status == "OutOfSync"
    assert diff.live is None
    assert diff.changed_paths == ()
    assert "+kind: Deployment" in diff.unified


def test_resource_gone_from_git_requires_pruning() -> None:
    diff = diff_resource(None, live_deployment())
    assert diff.requires_pruning
    assert not diff.missing
    assert diff.status == "OutOfSync"
    assert "-kind: Deployment" in diff.unified


def test_comparing_nothing_with_nothing_is_an_error() -> None:
    with pytest.raises(DiffError, match="nothing to compare"):
        diff_resource(None, None)


def test_ignore_rules_hide_a_replica_drift() -> None:
    live = scaled_by_kubectl(live_deployment(), 5)
    assert diff_resource(desired_deployment(), live).changed_paths == ("/spec/replicas",)
    rule = IgnoreRule(group="apps", kind="Deployment", json_pointers=("/spec/replicas",))
    assert diff_resource(desired_deployment(), live, rules=[rule]).synced
    by_manager = IgnoreRule(group="apps", kind="Deployment", managed_fields_managers=("kubectl",))
    assert diff_resource(desired_deployment(), live, rules=[by_manager]).synced
    by_jq = IgnoreRule(group="apps", kind="Deployment", jq_path_expressions=(".spec.replicas",))
    assert diff_resource(desired_deployment(), live, rules=[by_jq]).synced


def test_boolean_is_not_equal_to_number() -> None:
    assert changed_paths({"a": True, "b": 1}, {"a": 1, "b": 1.0}) == ("/a",)


def test_type_change_of_a_subtree_is_one_difference() -> None:
    assert changed_paths({"a": {"b": 1}}, {"a": [1]}) == ("/a",)
    assert changed_paths({"a": [1, 2, 3]}, {"a": [1]}) == ("/a/1", "/a/2")


def test_secret_change_shows_that_a_key_changed_but_not_the_value() -> None:
    desired = secret({"user": b64("admin"), "password": b64("n3w-Passw0rd!")})
    live = secret({"user": b64("admin"), "password": b64("0ld-Passw0rd!")})
    diff = diff_resource(desired, live)
    assert diff.status == "OutOfSync"
    assert diff.changed_paths == ("/data/password",)
    for leaked in ("n3w-Passw0rd!", "0ld-Passw0rd!", b64("n3w-Passw0rd!"), b64("0ld-Passw0rd!")):
        assert leaked not in diff.unified
        assert leaked not in repr(diff)


def test_secret_written_with_string_data_matches_the_stored_secret() -> None:
    desired = secret(stringData={"password": "hunter2"})
    live = secret({"password": b64("hunter2")})
    live["metadata"]["resourceVersion"] = "77"
    assert diff_resource(desired, live).synced


def test_secret_value_never_appears_in_unified_diff_or_repr() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "+/=-_.:@ "
    for _ in range(150):
        keys = [f"key-{i}" for i in range(rng.randint(1, 4))]
        old = {k: "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 48))) for k in keys}
        new = {k: rng.choice([old[k], old[k][::-1] + "!"]) for k in keys}
        desired = (
            secret(stringData=dict(new))
            if rng.random() < 0.5
            else secret({k: b64(v) for k, v in new.items()})
        )
        live = secret({k: b64(v) for k, v in old.items()})
        live["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": repr(old)
        }
        diff = diff_resource(desired, live)
        rendered = "\n".join([repr(diff), diff.unified, *diff.changed_paths])
        for value in [*old.values(), *new.values()]:
            assert value not in rendered
            assert b64(value) not in rendered
        changed = {k for k in keys if old[k] != new[k]}
        assert set(diff.changed_paths) == {f"/data/{k}" for k in changed}


def test_secret_is_redacted_before_ignore_rules_see_it() -> None:
    desired = secret({"token": b64("s3cr3t-token-value")})
    live = secret({"token": b64("other-token-value")})
    rule = IgnoreRule(kind="Secret", jq_path_expressions=('.data.token | select(. == "x")',))
    diff = diff_resource(desired, live, rules=[rule])
    assert diff.changed_paths == ("/data/token",)
    assert "s3cr3t" not in repr(diff)


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        (desired_deployment(), scaled_by_kubectl(live_deployment(), 5)),
        (secret({"a": b64("one")}), secret({"a": b64("two")})),
    ],
)
def test_a_comparison_changes_neither_object_it_compares(desired: dict, live: dict) -> None:
    """The diff works on private copies in place (redaction, ignore rules): never on the
    rendered manifest or the watch cache's live object."""
    rules = [IgnoreRule(group="*", kind="*", json_pointers=("/spec/replicas", "/data/a"))]
    before = (repr(desired), repr(live))
    diff_resource(desired, live)
    diff_resource(desired, live, rules=rules)
    assert (repr(desired), repr(live)) == before
