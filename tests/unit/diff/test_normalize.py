import base64

from gitsail.diff import normalize

from .objects import desired_deployment, live_deployment, secret


def test_server_bookkeeping_and_status_are_dropped() -> None:
    out = normalize(live_deployment())
    meta = out["metadata"]
    for key in ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"):
        assert key not in meta
    assert "status" not in out
    assert "kubectl.kubernetes.io/last-applied-configuration" not in meta["annotations"]
    assert meta["annotations"]["argocd.argoproj.io/tracking-id"]


def test_normalize_does_not_touch_its_input() -> None:
    live = live_deployment()
    normalize(live)
    assert live == live_deployment()


def test_owner_references_and_finalizers_are_kept() -> None:
    obj = desired_deployment()
    obj["metadata"]["ownerReferences"] = [{"kind": "Foo", "name": "x", "uid": "1"}]
    obj["metadata"]["finalizers"] = ["example.com/cleanup"]
    out = normalize(obj)
    assert out["metadata"]["ownerReferences"] == obj["metadata"]["ownerReferences"]
    assert out["metadata"]["finalizers"] == ["example.com/cleanup"]


def test_nulls_and_empty_maps_the_server_omits_are_dropped() -> None:
    obj = desired_deployment()
    obj["metadata"]["labels"] = {}
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = []
    out = normalize(obj)
    assert "labels" not in out["metadata"]
    template = out["spec"]["template"]
    assert "creationTimestamp" not in template["metadata"]
    assert "env" not in template["spec"]["containers"][0]


def test_empty_objects_that_carry_meaning_are_kept() -> None:
    obj = desired_deployment()
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    out = normalize(obj)
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    assert out["spec"]["template"]["spec"]["securityContext"] == {}


def test_secret_string_data_is_merged_into_data_like_the_apiserver_does() -> None:
    out = normalize(secret({"user": "YWRtaW4="}, stringData={"password": "hunter2"}))
    assert "stringData" not in out
    assert out["data"] == {
        "user": "YWRtaW4=",
        "password": base64.b64encode(b"hunter2").decode(),
    }
