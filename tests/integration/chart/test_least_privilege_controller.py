"""helm install → the controller as its pod would run it (the live Deployment's arguments,
a token of its least-privilege ServiceAccount; here from the source checkout, and from the
image's filesystem in tests/integration/image/) delivering where it may and refused
elsewhere → helm upgrade widening its delivery → helm uninstall leaving no object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gitsail.dev.cluster import Cluster
from gitsail.dev.gitserver import Workdir
from gitsail.kube import Kube
from tests.integration.chart.lifecycle import chart_lifecycle
from tests.integration.controller.conftest import (  # noqa: F401 (fixtures)
    api,
    control_ns,
    crds_installed,
)

pytestmark = pytest.mark.integration


async def test_chart_install_deliver_upgrade_uninstall_with_least_privilege(
    api: Kube,  # noqa: F811
    cluster: Cluster,
    control_ns: str,  # noqa: F811
    git_repo: Workdir,
    tmp_path: Path,
    crds_installed: None,  # noqa: F811
) -> None:
    def run(args: list[str], kubeconfig: str, log: Path) -> subprocess.Popen[bytes]:
        path = tmp_path / f"{log.stem}.kubeconfig"
        path.write_text(kubeconfig)
        path.chmod(0o600)
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "gitsail", *args, "--kubeconfig", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    seen = await chart_lifecycle(api, cluster, control_ns, git_repo, tmp_path, run)
    assert seen["container"]["args"][:3] == ["controller", "--namespace", control_ns]
