from __future__ import annotations

import base64
import random
import string

from gitsail.diff import redact_pair, redact_secret

from .objects import desired_deployment, secret


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_every_secret_value_is_masked_with_plus_signs() -> None:
    out = redact_secret(secret({"user": b64("admin"), "password": b64("hunter2")}))
    assert set(out["data"]) == {"user", "password"}
    assert all(set(v) == {"+"} for v in out["data"].values())


def test_equal_values_share_a_mask_and_different_values_do_not() -> None:
    out = redact_secret(
        secret({"a": b64("same"), "b": b64("same"), "c": b64("other")}, stringData={"d": "same"})
    )
    assert out["data"]["a"] == out["data"]["b"] == out["stringData"]["d"]
    assert out["data"]["a"] != out["data"]["c"]


def test_mask_length_does_not_follow_value_length() -> None:
    short = redact_secret(secret({"k": b64("x")}))["data"]["k"]
    long = redact_secret(secret({"k": b64("x" * 4096)}))["data"]["k"]
    assert short == long


def test_pair_uses_one_mask_table_across_both_sides() -> None:
    desired = secret(stringData={"password": "new-password"}, data={"user": b64("admin")})
    live = secret({"user": b64("admin"), "password": b64("old-password")})
    red_desired, red_live = redact_pair(desired, live)
    assert red_desired is not None
    assert red_live is not None
    assert red_desired["data"]["user"] == red_live["data"]["user"]
    assert red_desired["stringData"]["password"] != red_live["data"]["password"]
    assert redact_pair(None, live)[0] is None


def test_last_applied_configuration_is_removed_from_secrets() -> None:
    obj = secret({"password": b64("hunter2")})
    obj["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"password":"aHVudGVyMg=="}}',
        "team": "payments",
    }
    out = redact_secret(obj)
    assert out["metadata"]["annotations"] == {"team": "payments"}


def test_other_kinds_pass_through_unchanged() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"password": "visible"}}
    assert redact_secret(config_map) == config_map
    sealed = {"apiVersion": "bitnami.com/v1alpha1", "kind": "Secret", "data": {"k": "v"}}
    assert redact_secret(sealed) == sealed
    assert redact_secret(desired_deployment()) == desired_deployment()


def test_random_values_never_survive_redaction() -> None:
    rng = random.Random(20260504)
    alphabet = string.ascii_letters + string.digits + "!@#$%^&*()-_=+ "
    for _ in range(200):
        values = {
            f"k{i}": "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 64)))
            for i in range(rng.randint(1, 5))
        }
        obj = secret({k: b64(v) for k, v in values.items()}, stringData=dict(values))
        text = repr(redact_secret(obj))
        for value in values.values():
            assert value not in text
            assert b64(value) not in text
