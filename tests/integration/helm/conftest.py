"""Fixtures of the Helm integration tests (chart sources, OCI, HelmRelease).

Each engineer's fixtures live in their own marked section below; keep them there.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from gitsail.dev.chartrepo import ChartRepo, ChartServer
from tests.integration.flux.conftest import flux_kube

__all__ = ["flux_kube"]  # re-exported fixtures

# ---------------------------------------------------------------------------------------
# Chart repositories over HTTP (helm-sources)
#
# ``chart_repo`` / ``chart_repo_auth``: a fresh repository per test on one session-wide
# server (anonymous / behind basic auth as ``CHART_USER``), seeded with the example charts
# (``gitsail.dev.chartrepo.EXAMPLE_CHARTS``: redis 16.13.2, 17.0.0, 17.3.2, 17.4.0-rc.1 and
# podinfo 6.5.0, 6.6.0). ``repo.url`` is its base URL, ``repo.publish("17.5.0")`` publishes
# another redis version (or ``repo.publish(chart_dir, "1.2.3")`` any chart directory),
# ``repo.auth`` is (username, password) or None. Tests never see each other's publications.
# ---------------------------------------------------------------------------------------

CHART_USER = ("chart-user", "chart-pass-17")
_names = itertools.count()


@pytest.fixture(scope="session")
def chart_server() -> Iterator[ChartServer]:
    with ChartServer() as server:
        yield server


@pytest.fixture(scope="session")
def chart_server_auth() -> Iterator[ChartServer]:
    with ChartServer(credentials=CHART_USER) as server:
        yield server


def _repo_name(request: pytest.FixtureRequest) -> str:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    return f"{base}-{os.getpid()}-{next(_names)}"


@pytest.fixture
def chart_repo(chart_server: ChartServer, request: pytest.FixtureRequest) -> ChartRepo:
    """A repository of the example charts, anonymous."""
    return chart_server.repository(_repo_name(request))


@pytest.fixture
def chart_repo_auth(chart_server_auth: ChartServer, request: pytest.FixtureRequest) -> ChartRepo:
    """A repository of the example charts behind basic auth (``CHART_USER``)."""
    return chart_server_auth.repository(_repo_name(request))


# ---------------------------------------------------------------------------------------
