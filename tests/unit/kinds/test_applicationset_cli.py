"""`gitsail appset generate`: the Applications a set would make, offline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gitsail.cli.main import app

SET = """\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: dirs}
spec:
  goTemplate: true
  goTemplateOptions: ["missingkey=error"]
  generators:
  - git: {repoURL: https://git.example/r, directories: [{path: 'apps/*'}]}
  template:
    metadata: {name: '{{.path.basename}}'}
    spec:
      project: default
      source: {repoURL: https://git.example/r, path: '{{.path.path}}'}
      destination: {server: https://kubernetes.default.svc, namespace: NS}
"""


def write_set(tmp_path: Path, namespace: str = "apps") -> Path:
    (tmp_path / "repo/apps/a").mkdir(parents=True)
    (tmp_path / "repo/apps/b").mkdir(parents=True)
    path = tmp_path / "set.yaml"
    path.write_text(SET.replace("NS", namespace))
    return path


def test_generate_prints_the_applications_from_a_local_checkout(tmp_path: Path) -> None:
    path = write_set(tmp_path)
    result = CliRunner().invoke(
        app, ["appset", "generate", str(path), "--repo-dir", str(tmp_path / "repo"), "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    apps = json.loads(result.stdout)
    assert [a["metadata"]["name"] for a in apps] == ["a", "b"]
    assert apps[0]["spec"]["source"]["path"] == "apps/a"
    assert apps[0]["metadata"]["namespace"] == "argocd"


def test_generate_fails_on_a_missing_key_and_without_a_checkout(tmp_path: Path) -> None:
    path = write_set(tmp_path, namespace="'{{.nope}}'")
    result = CliRunner().invoke(
        app, ["appset", "generate", str(path), "--repo-dir", str(tmp_path / "repo")]
    )
    assert result.exit_code == 1
    assert 'no entry for key "nope"' in result.output
    result = CliRunner().invoke(app, ["appset", "generate", str(path)])
    assert result.exit_code == 1
    assert "--repo-dir" in result.output
