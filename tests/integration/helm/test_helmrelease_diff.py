"""``gitsail diff helmrelease`` against a real release on the shared cluster.

The release is installed by driving the reconciler (``Env``); its chart's artifact URL points
at a loopback HTTP server over the test's ``ArtifactStore`` (source-controller's part), so the
CLI, running as a separate process, downloads and checks the chart as it would from a real
controller.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.integration.helm.releases import (
    CONFIGMAP,
    Env,
    env,
    hr_kube,
    package_chart,
    ready,
)

__all__ = ["env", "hr_kube"]  # fixtures

pytestmark = pytest.mark.integration

OTHER = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-other
data:
  color: blue
"""

SECRET_V1 = "hunter2-hr-diff-one"
SECRET_V2 = "hunter2-hr-diff-two"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(env: Env) -> Iterator[str]:
    """The test's ArtifactStore over HTTP on 127.0.0.1; its artifacts' URLs point there."""
    handler = functools.partial(_Quiet, directory=str(env.store.root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env.store.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield env.store.base_url
    finally:
        server.shutdown()
        server.server_close()


async def _diff(env: Env, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gitsail",
        "diff",
        "helmrelease",
        *args,
        "-n",
        env.ns,
        "--kubeconfig",
        str(env.kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _secret(env: Env, value: str) -> None:
    await env.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": env.ns},
            "data": {"extra": base64.b64encode(value.encode()).decode()},
        },
        field_manager="test",
        force=True,
    )


async def test_diff_helmrelease_shows_values_and_drift_and_never_a_secret(
    env: Env, served: str, tmp_path: Path
) -> None:
    package = package_chart(
        "web", "1.0.0", templates={"configmap.yaml": CONFIGMAP, "other.yaml": OTHER}
    )
    await _secret(env, SECRET_V1)
    release = env.release(
        "web",
        chart="web",
        values={"architecture": "standalone"},
        valuesFrom=[
            {"kind": "Secret", "name": "creds", "valuesKey": "extra", "targetPath": "extra"}
        ],
    )
    await env.apply(release)
    obj = await env.installed("web", package, "1.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    chart = await env.kube.get("source.toolkit.fluxcd.io/v1", "HelmChart", f"{env.ns}-web", env.ns)
    assert chart is not None
    assert chart["status"]["artifact"]["url"].startswith(served)

    code, out, err = await _diff(env, "web")
    assert code == 0, (out, err)
    assert out == ""

    # values change, a Secret value changes, and someone edits a live object
    release["spec"]["values"] = {"architecture": "replication"}
    await env.apply(release)
    await _secret(env, SECRET_V2)
    await env.kube.merge_patch("v1", "ConfigMap", "web-other", {"data": {"color": "red"}}, env.ns)

    code, out, err = await _diff(env, "web")
    assert code == 1, (out, err)
    assert out.startswith("values\n"), out
    assert "architecture" in out
    assert "replication" in out
    assert f"► ConfigMap/{env.ns}/web-other drifted" in out
    assert "data.color" in out
    assert f"► ConfigMap/{env.ns}/web-config drifted" in out
    for secret in (SECRET_V1, SECRET_V2):
        assert secret not in out
        assert secret not in err

    code, out, err = await _diff(env, "web", "-o", "json")
    assert code == 1, err
    found = json.loads(out)
    assert set(found) == {"values", "objects"}
    values = {v["path"]: v for v in found["values"]}
    assert values["architecture"] == {
        "path": "architecture",
        "live": "standalone",
        "desired": "replication",
    }
    assert "extra" in values  # it changed, but not what to
    objects = {o["object"]: o for o in found["objects"]}
    other = objects[f"ConfigMap/{env.ns}/web-other"]
    assert other["action"] == "drifted"
    assert {"path": "data.color", "live": "red", "desired": "blue"} in other["fields"]
    for secret in (SECRET_V1, SECRET_V2):
        assert secret not in out


async def test_diff_helmrelease_unreachable_chart_url_exits_2(env: Env) -> None:
    package = package_chart("web", "1.0.0", templates={"other.yaml": OTHER})
    await env.apply(env.release("web", chart="web"))
    obj = await env.installed("web", package, "1.0.0")  # URL: http://gitsail.invalid/...
    assert ready(obj)["status"] == "True", ready(obj)
    code, out, err = await _diff(env, "web")
    assert code == 2, (out, err)
    assert "the chart cannot be read" in err
    assert "gitsail.invalid" in err
    assert "status.artifact.url" in err
    assert out == ""


async def test_diff_helmrelease_new_chart_without_an_object_shows_it_deleted(
    env: Env, served: str
) -> None:
    both = package_chart(
        "web", "1.0.0", templates={"configmap.yaml": CONFIGMAP, "other.yaml": OTHER}
    )
    await env.apply(env.release("web", chart="web"))
    obj = await env.installed("web", both, "1.0.0")
    assert ready(obj)["status"] == "True", ready(obj)
    # source-controller publishes 2.0.0, which no longer has the other ConfigMap
    await env.publish(
        "web", package_chart("web", "2.0.0", templates={"configmap.yaml": CONFIGMAP}), "2.0.0"
    )

    code, out, err = await _diff(env, "web", "-o", "yaml")
    assert code == 1, (out, err)
    found = yaml.safe_load(out)
    assert found["values"] == []
    objects = {o["object"]: o for o in found["objects"]}
    assert objects[f"ConfigMap/{env.ns}/web-other"] == {
        "object": f"ConfigMap/{env.ns}/web-other",
        "action": "deleted",
    }
    config = objects[f"ConfigMap/{env.ns}/web-config"]  # data.chart is the chart's version
    assert config["action"] == "drifted"
    assert {"path": "data.chart", "live": "1.0.0", "desired": "2.0.0"} in config["fields"]
    assert await env.configmap("web-other") is not None  # a diff never deletes
