"""The test and demo chart repository: the real ``helm`` reads it as any repository, and the
same packages give the same index (so its digest only moves when something is published)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitsail.dev.chartrepo import ChartRepo, ChartServer
from gitsail.toolchain import find_binary
from tests.integration.helm.conftest import CHART_USER

pytestmark = pytest.mark.integration


def helm(home: Path, *args: str) -> str:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(find_binary("helm")), *args], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_real_helm_lists_and_pulls_from_the_repository_with_basic_auth(
    chart_repo_auth: ChartRepo, tmp_path: Path
) -> None:
    user, password = CHART_USER
    helm(
        tmp_path,
        "repo",
        "add",
        "local",
        chart_repo_auth.url,
        "--username",
        user,
        "--password",
        password,
    )
    listed = helm(tmp_path, "search", "repo", "local/redis", "--versions", "--devel")
    for version in ("16.13.2", "17.0.0", "17.3.2", "17.4.0-rc.1"):
        assert version in listed
    helm(tmp_path, "pull", "local/redis", "--version", "17.x", "-d", str(tmp_path))
    assert (tmp_path / "redis-17.3.2.tgz").read_bytes() == (
        chart_repo_auth.root / "redis-17.3.2.tgz"
    ).read_bytes()


def test_the_same_packages_give_the_same_index(chart_server: ChartServer) -> None:
    first = chart_server.repository(f"same-a-{os.getpid()}")
    second = chart_server.repository(f"same-b-{os.getpid()}")
    assert first.index_digest() == second.index_digest()
    second.publish("17.5.0")
    assert first.index_digest() != second.index_digest()
