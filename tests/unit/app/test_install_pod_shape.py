"""`gitsail install`'s controller: a PodSecurity `restricted` pod of the image's user."""

from gitsail.app.install import RUN_AS, controller_manifests


def _deployment() -> dict:  # type: ignore[type-arg]
    return next(o for o in controller_manifests("gs") if o["kind"] == "Deployment")


def test_pods_are_restricted_compatible() -> None:
    deployments = [o for o in controller_manifests("gs") if o["kind"] == "Deployment"]
    assert len(deployments) == 2  # the controller and the server
    for deployment in deployments:
        _check_restricted(deployment["spec"]["template"]["spec"])


def _check_restricted(pod: dict) -> None:  # type: ignore[type-arg]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == RUN_AS == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", "/home/gitsail"} <= mounts
    assert {v["name"] for v in pod["volumes"]} == {"tmp", "home"}


def test_components_in_apply_order() -> None:
    manifests = controller_manifests("gs", replicas=2, sealed_secrets=True)
    assert manifests[0]["kind"] == "Namespace"
    # each component: its ServiceAccount, then its RBAC, then its Deployment and Service
    for component in ("gitsail-controller", "gitsail-server"):
        kinds = [
            o["kind"]
            for o in manifests
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == component
        ]
        assert kinds[0] == "ServiceAccount"
        assert kinds[-2:] == ["Deployment", "Service"]
        assert set(kinds[1:-2]) <= {"ClusterRole", "ClusterRoleBinding", "RoleBinding"}
    assert [o["metadata"]["labels"]["app.kubernetes.io/name"] for o in manifests[1:]] == sorted(
        o["metadata"]["labels"]["app.kubernetes.io/name"] for o in manifests[1:]
    )
    args = _deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["controller", "--namespace", "gs"]
