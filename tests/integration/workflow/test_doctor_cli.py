"""`gitsail doctor` on the article's layout, rendered with the real kustomize."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.workflow.conftest import EXAMPLE, gitsail

pytestmark = pytest.mark.integration


def test_the_articles_layout_lacks_only_production_limits_and_probes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    done = gitsail("doctor", str(repo), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)
    assert {(f["rule"], f["file"]) for f in findings} == {
        ("no-limits", "apps/overlays/production"),
        ("no-probes", "apps/overlays/production"),
    }
    apps = {f["message"].split(":")[0] for f in findings}
    assert apps == {
        "Application/argocd/myapp-production",
        "Kustomization/flux-system/myapp-production",
    }


def test_sarif_output_and_a_clean_exit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    patch = repo / "apps/overlays/production/increase-resources.yaml"
    patch.write_text(
        patch.read_text()
        + '            limits:\n              memory: "1Gi"\n'
        + "          readinessProbe:\n            httpGet: {path: /, port: 8080}\n"
    )
    done = gitsail("doctor", str(repo), "-o", "sarif", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["runs"][0]["results"] == []
