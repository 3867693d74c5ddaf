"""The key-usage gauge of the Sealed Secrets controller (controller/sealedsecrets_metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gitsail.controller.sealedsecrets_metrics import KeyUsage
from gitsail.secrets.keys import KeyRing, SealingKey
from gitsail.secrets.sealedsecret import seal_secret


def sealed(key: SealingKey, name: str) -> dict[str, object]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "apps"},
        "stringData": {"password": "pw"},
    }
    return seal_secret(key.public_key, secret)


def test_a_sealedsecret_on_an_old_key_is_reported_not_current(
    key: SealingKey, other_key: SealingKey
) -> None:
    registry = CollectorRegistry()
    usage = KeyUsage(registry)
    ring = KeyRing((key, other_key))  # other_key is the newest
    assert usage.observe(sealed(key, "old"), ring) == key.fingerprint
    assert usage.observe(sealed(other_key, "new"), ring) == other_key.fingerprint
    text = generate_latest(registry).decode()
    assert 'name="old",namespace="apps"' in text
    old = next(line for line in text.splitlines() if 'name="old"' in line)
    new = next(line for line in text.splitlines() if 'name="new"' in line)
    assert 'current="false"' in old
    assert key.fingerprint in old
    assert 'current="true"' in new


def test_a_resealed_secret_replaces_its_series_and_deletion_removes_it(
    key: SealingKey, other_key: SealingKey
) -> None:
    registry = CollectorRegistry()
    usage = KeyUsage(registry)
    ring = KeyRing((key, other_key))
    usage.observe(sealed(key, "app"), ring)
    usage.observe(sealed(other_key, "app"), ring)
    lines = [
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("gitsail_sealedsecret_key_info{")
    ]
    assert len(lines) == 1
    assert 'current="true"' in lines[0]
    usage.forget("apps", "app")
    assert 'name="app"' not in generate_latest(registry).decode()


def test_no_active_key_is_reported_as_none(key: SealingKey, other_key: SealingKey) -> None:
    usage = KeyUsage(CollectorRegistry())
    assert usage.observe(sealed(key, "lost"), KeyRing((other_key,))) == "none"


def test_one_gauge_per_registry() -> None:
    registry = CollectorRegistry()
    assert KeyUsage(registry).gauge is KeyUsage(registry).gauge
