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


def _containers(value: object) -> list[object]:
    found: list[object] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found += _containers(item)
    elif isinstance(value, list):
        found.append(value)
        for item in value:
            found += _containers(item)
    return found


def test_the_result_shares_no_map_or_list_with_its_input() -> None:
    """Callers change the result in place (redaction, ignore rules): the input must not."""
    for obj in (live_deployment(), secret({"user": "YWRtaW4="}, stringData={"p": "x"})):
        before = {id(c) for c in _containers(obj)}
        out = normalize(obj)
        assert not before & {id(c) for c in _containers(out)}


def test_a_secret_s_string_data_is_merged_without_changing_the_input() -> None:
    obj = secret({"user": "YWRtaW4="}, stringData={"password": "hunter2"})
    normalize(obj)
    assert obj["data"] == {"user": "YWRtaW4="}
    assert obj["stringData"] == {"password": "hunter2"}


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
