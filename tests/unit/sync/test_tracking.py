from __future__ import annotations

from gitsail.model import Obj
from gitsail.sync.tracking import (
    TRACKING_ANNOTATION,
    is_owned_by,
    mark,
    owner_of,
    shared_resource_message,
)


def configmap(name: str = "web", namespace: str = "shop") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
    }


def test_owner_of_names_the_app_whose_mark_names_this_very_object() -> None:
    marked = mark(configmap(), "argocd_other")
    assert owner_of(marked) == "argocd_other"
    assert is_owned_by(marked, "argocd_other")
    assert not is_owned_by(marked, "mine")


def test_a_copied_or_missing_mark_makes_no_owner() -> None:
    copied = mark(configmap("original"), "other")
    copied["metadata"]["name"] = "copy"
    assert owner_of(copied) is None
    assert owner_of(configmap()) is None
    garbage = configmap()
    garbage["metadata"]["annotations"] = {TRACKING_ANNOTATION: ":"}
    assert owner_of(garbage) is None


def test_shared_resource_message_is_argo_cds() -> None:
    message = shared_resource_message(mark(configmap(), "team_a"), "argocd/b", "team_a")
    assert message == "ConfigMap/web is part of applications argocd/b and team/a"
