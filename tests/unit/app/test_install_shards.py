"""``gitsail install --shards N``: the controller as a sharded StatefulSet."""

from __future__ import annotations

import pytest

from gitsail.app.install import controller_manifests
from gitsail.app.install_shards import check_shards, with_shards
from gitsail.app.install_vault_injector import with_vault_injector
from gitsail.model import Obj


def _controller(manifests: list[Obj]) -> Obj:
    (obj,) = [
        o
        for o in manifests
        if o["metadata"].get("name") == "gitsail-controller"
        and o["kind"] in {"Deployment", "StatefulSet"}
    ]
    return obj


def _env(obj: Obj) -> dict[str, str]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_one_shard_keeps_the_deployment() -> None:
    manifests = with_shards(controller_manifests("argocd", replicas=2), 1, replicas=2)
    obj = _controller(manifests)
    assert obj["kind"] == "Deployment"
    assert obj["spec"]["replicas"] == 2
    assert _env(obj) == {}


def test_shards_make_a_statefulset_of_one_replica_per_shard_claiming_leases() -> None:
    manifests = with_shards(controller_manifests("argocd"), 3, replicas=1)
    obj = _controller(manifests)
    assert obj["kind"] == "StatefulSet"
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["serviceName"] == "gitsail-controller"
    assert obj["spec"]["podManagementPolicy"] == "Parallel"
    assert _env(obj) == {"GITSAIL_CONTROLLER_SHARDS": "3", "GITSAIL_CONTROLLER_SHARD": "auto"}
    # The server's Deployment is left alone.
    server = [o for o in manifests if o["metadata"].get("name") == "gitsail-server"]
    assert all(o["kind"] != "StatefulSet" for o in server)


def test_ordinal_assignment_leaves_the_shard_to_the_hostname() -> None:
    obj = _controller(
        with_shards(controller_manifests("argocd"), 4, replicas=4, assignment="ordinal")
    )
    assert obj["kind"] == "StatefulSet"
    assert _env(obj) == {"GITSAIL_CONTROLLER_SHARDS": "4"}


def test_the_vault_injector_survives_the_conversion() -> None:
    manifests = with_vault_injector(controller_manifests("argocd"), "argocd")
    obj = _controller(with_shards(manifests, 2, replicas=1))
    assert obj["kind"] == "StatefulSet"
    assert "--vault-injector" in obj["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("shards", "replicas", "assignment", "message"),
    [
        (0, 1, "auto", "--shards"),
        (1025, 1, "auto", "--shards"),
        (3, 1, "round-robin", "--shard-assignment"),
        (3, 2, "ordinal", "one replica per shard"),
        (3, 0, "auto", "--replicas"),
    ],
)
def test_impossible_counts_are_refused(
    shards: int, replicas: int, assignment: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_shards(shards, replicas, assignment)


def test_more_or_fewer_replicas_than_shards_with_auto() -> None:
    assert check_shards(8, 3, "auto") == 3  # fewer: each holds several
    assert check_shards(2, 4, "auto") == 4  # more: standbys
    assert check_shards(1, 2, "ordinal") == 2  # unsharded: leader election as before
