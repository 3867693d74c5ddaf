"""gitsail ci init: the pipelines validate against the CI's published JSON schemas (vendored
by the pinned check-jsonschema package), carry the article's steps, and refuse bad input."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from gitsail.cli.main import app
from gitsail.workflow.ci import CIError, CIOptions, generate


def _schema(name: str) -> Any:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / f"{name}.json").read_text(encoding="utf-8"))


def _valid(schema_name: str, text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    validator = jsonschema.validators.validator_for(_schema(schema_name))(_schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message[:200]}" for e in errors]
    return dict(data)


def _runs(data: dict[str, Any]) -> str:
    return "\n".join(
        str(step.get("run", "")) for job in data["jobs"].values() for step in job.get("steps", [])
    )


@pytest.mark.parametrize(
    "options",
    [
        CIOptions("github"),
        CIOptions(
            "github",
            image="registry.example.com/team/web",
            manifests_repo="https://github.com/myorg/gitops-manifests",
            environment="overlays/development",
            manifests_image="myregistry.io/myapp",
        ),
    ],
)
def test_github_workflows_validate_and_follow_the_article(options: CIOptions) -> None:
    pipeline = generate(options)
    delivery, preview = pipeline.files
    assert delivery.path == ".github/workflows/gitsail-delivery.yml"
    data = _valid("github-workflows", delivery.text)
    build = data["jobs"]["build"]["steps"]
    names = [s.get("name", s.get("uses")) for s in build]
    assert names.index("Build") < names.index("Scan (a CRITICAL vulnerability fails the build)")
    assert names.index("Scan (a CRITICAL vulnerability fails the build)") < names.index("Push")
    bump = data["jobs"]["update-manifests"]
    assert bump["needs"] == ["build"]
    assert 'gitsail image set "$ENVIRONMENT" "$NAME=$IMAGE:$TAG" --push' in _runs(data)
    assert bump["env"]["ENVIRONMENT"] == options.environment
    assert "kubectl" not in delivery.text
    assert "helm upgrade" not in delivery.text

    pdata = _valid("github-workflows", preview.text)
    assert "gitsail preview --pr" in _runs(pdata)
    assert "gh pr comment" in _runs(pdata)
    assert "gitsail doctor" in _runs(pdata)
    secrets = {s.name for s in pipeline.secrets}
    if options.manifests_repo:
        assert "GITOPS_TOKEN" in secrets
        assert "secrets.GITOPS_TOKEN" in delivery.text
        assert bump["steps"][0]["with"]["repository"] == "myorg/gitops-manifests"
        assert {"REGISTRY_USERNAME", "REGISTRY_PASSWORD"} <= secrets
        assert pipeline.notes  # the preview workflow belongs in the manifests repository
    else:
        assert secrets == set()  # GITHUB_TOKEN is built in
    for name in secrets:
        assert name in delivery.text.split("\n\n")[0]  # named in the header


@pytest.mark.parametrize(
    "options",
    [
        CIOptions("gitlab"),
        CIOptions(
            "gitlab",
            image="registry.example.com/team/web",
            manifests_repo="https://gitlab.example.com/team/manifests.git",
        ),
    ],
)
def test_gitlab_pipeline_validates_and_follows_the_article(options: CIOptions) -> None:
    pipeline = generate(options)
    (ci,) = pipeline.files
    assert ci.path == ".gitlab-ci.yml"
    data = _valid("gitlab-ci", ci.text)
    assert data["stages"] == ["build", "scan", "push", "deploy", "preview"]
    assert data["push"]["needs"] == ["build", "scan"]
    assert any("gitsail image set" in line for line in data["update-manifests"]["script"])
    assert any("gitsail preview --pr" in line for line in data["preview"]["script"])
    assert any("merge_requests" in line for line in data["comment-preview"]["script"])
    secrets = {s.name for s in pipeline.secrets}
    assert {"GITOPS_TOKEN", "PREVIEW_TOKEN"} <= secrets
    assert ("REGISTRY_PASSWORD" in secrets) == bool(options.image)
    assert "$GITOPS_TOKEN" in ci.text
    assert "glpat" not in ci.text


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (CIOptions("jenkins"), "github, gitlab"),
        (CIOptions("github", image="web:1.0"), "name only"),
        (CIOptions("github", image="Not An Image"), "--image"),
        (CIOptions("github", environment="../elsewhere"), "--environment"),
        (CIOptions("github", environment="$(curl evil)"), "--environment"),
        (CIOptions("github", branch="main; rm -rf /"), "--branch"),
        (CIOptions("github", manifests_repo="https://bot:tok@github.com/o/r"), "credentials"),
        (CIOptions("github", manifests_repo="http://github.com/o/r"), "https"),
        (CIOptions("github", manifests_repo="https://gitlab.com/o/r"), "github.com"),
        (CIOptions("gitlab", manifests_repo="https://h/o/r?x=$(id)"), "plain"),
        (CIOptions("github", gitsail_image="ghcr.io/gitsail/gitsail:latest"), "pin"),
    ],
)
def test_refuses_what_cannot_go_into_a_pipeline(options: CIOptions, needle: str) -> None:
    with pytest.raises(CIError, match=None) as info:
        generate(options)
    assert needle in str(info.value)


def test_cli_writes_refuses_to_overwrite_and_forces(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["ci", "init", "gitlab", "--dir", str(tmp_path), "-o", "json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["files"] == [{"path": str(tmp_path / ".gitlab-ci.yml"), "repository": "both"}]
    assert {s["name"] for s in report["secrets"]} == {"GITOPS_TOKEN", "PREVIEW_TOKEN"}
    (tmp_path / ".gitlab-ci.yml").write_text("# mine\n")
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "exists already" in again.output
    assert (tmp_path / ".gitlab-ci.yml").read_text() == "# mine\n"
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0
    assert "gitsail preview --pr" in (tmp_path / ".gitlab-ci.yml").read_text()


def test_cli_github_writes_both_workflows(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["ci", "init", "github", "--dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    workflows = sorted(p.name for p in (tmp_path / ".github/workflows").iterdir())
    assert workflows == ["gitsail-delivery.yml", "gitsail-preview.yml"]
    assert "secrets: none beyond" in done.output
