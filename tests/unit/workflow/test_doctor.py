"""gitsail doctor: one planted problem per rule is found, a clean repository has none."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gitsail.model import Obj
from gitsail.render import RenderError
from gitsail.workflow.doctor import RULES, Finding, doctor, sarif
from gitsail.workflow.preview import AppSource

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gitops-repo"

CLEAN_APP = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web-production
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://git.example.com/org/manifests.git
    targetRevision: main
    path: apps/web/production
  destination:
    server: https://kubernetes.default.svc
    namespace: production
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
"""

CLEAN_KUSTOMIZATION = """\
resources:
  - deployment.yaml
images:
  - name: registry.example.com/web
    newTag: 1.4.2
"""

CLEAN_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example.com/web:1.4.2
          resources:
            limits: {cpu: 500m, memory: 256Mi}
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
"""

CLEAN_CI = """\
name: build
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: docker build -t registry.example.com/web:${{ github.sha }} .
      - run: gitsail image set apps/web/staging registry.example.com/web:${{ github.sha }} --push
"""


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    base = {
        "clusters/web-production.yaml": CLEAN_APP,
        "apps/web/production/kustomization.yaml": CLEAN_KUSTOMIZATION,
        "apps/web/production/deployment.yaml": CLEAN_DEPLOYMENT,
        ".github/workflows/build.yaml": CLEAN_CI,
    }
    base.update(files)
    for rel, text in base.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _render_files(app: AppSource, root: Path) -> list[Obj]:
    """A stand-in renderer: the plain manifests of the app directory (no kustomize)."""
    import yaml

    objs: list[Obj] = []
    for path in sorted((root / app.path).glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return objs


def _rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def test_clean_repository_has_no_findings(tmp_path: Path) -> None:
    assert doctor(_repo(tmp_path, {}), render=_render_files) == []


def test_plain_secret_is_found_with_its_line(tmp_path: Path) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: c2VjcmV0\n"
    findings = doctor(_repo(tmp_path, {"apps/web/production/secret.yaml": secret}))
    (finding,) = findings
    assert (finding.rule, finding.file, finding.line) == (
        "plain-secret",
        "apps/web/production/secret.yaml",
        6,
    )
    assert "c2VjcmV0" not in finding.message  # never the value
    assert "gitsail seal" in finding.fix


@pytest.mark.parametrize(
    ("image", "tag_line"),
    [("registry.example.com/web:latest", 10), ("registry.example.com/web", 10)],
)
def test_latest_or_missing_tag_is_a_mutable_tag(tmp_path: Path, image: str, tag_line: int) -> None:
    deployment = CLEAN_DEPLOYMENT.replace("registry.example.com/web:1.4.2", image)
    findings = doctor(_repo(tmp_path, {"apps/web/production/deployment.yaml": deployment}))
    assert [(f.rule, f.line) for f in findings] == [("mutable-tag", tag_line)]


def test_kustomize_newtag_latest_is_a_mutable_tag(tmp_path: Path) -> None:
    kustomization = CLEAN_KUSTOMIZATION.replace("1.4.2", "latest")
    findings = doctor(_repo(tmp_path, {"apps/web/production/kustomization.yaml": kustomization}))
    assert _rules(findings) == {"mutable-tag"}


def test_application_without_automated_sync(tmp_path: Path) -> None:
    app = CLEAN_APP.split("  syncPolicy:")[0]
    findings = doctor(_repo(tmp_path, {"clusters/web-production.yaml": app}))
    assert _rules(findings) == {"no-automated-sync"}


def test_application_without_self_heal_and_prune(tmp_path: Path) -> None:
    app = CLEAN_APP.replace("selfHeal: true", "selfHeal: false").replace(
        "prune: true", "prune: false"
    )
    findings = doctor(_repo(tmp_path, {"clusters/web-production.yaml": app}))
    assert _rules(findings) == {"no-self-heal", "no-prune"}
    assert all(f.line == 16 for f in findings)  # spec.syncPolicy


def test_flux_kustomization_without_prune(tmp_path: Path) -> None:
    ks = (
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
        "  name: web\n  namespace: flux-system\nspec:\n  interval: 10m\n"
        "  path: ./apps/web/production\n  sourceRef:\n    kind: GitRepository\n    name: repo\n"
        "  targetNamespace: production\n  prune: false\n"
    )
    findings = doctor(_repo(tmp_path, {"clusters/flux/web.yaml": ks}), render=_render_files)
    assert _rules(findings) == {"no-prune"}


def test_ci_that_applies_to_a_cluster(tmp_path: Path) -> None:
    ci = CLEAN_CI + "      - run: kubectl apply -k overlays/production\n"
    ci += "      - run: helm upgrade --install web ./chart\n"
    findings = doctor(_repo(tmp_path, {".github/workflows/build.yaml": ci}))
    assert [(f.rule, f.line) for f in findings] == [
        ("ci-applies-to-cluster", 9),
        ("ci-applies-to-cluster", 10),
    ]


def test_credentials_in_repository_url(tmp_path: Path) -> None:
    app = CLEAN_APP.replace("https://git.example.com", "https://bot:s3cr3t@git.example.com")
    findings = doctor(_repo(tmp_path, {"clusters/web-production.yaml": app}))
    (finding,) = findings
    assert (finding.rule, finding.line) == ("credentials-in-url", 9)
    assert "s3cr3t" not in finding.message


def test_environments_rendered_by_different_tools(tmp_path: Path) -> None:
    staging_app = CLEAN_APP.replace("web-production", "web-staging").replace(
        "apps/web/production", "apps/web/staging"
    )
    chart = "apiVersion: v2\nname: web\nversion: 0.1.0\n"
    findings = doctor(
        _repo(
            tmp_path,
            {"clusters/web-staging.yaml": staging_app, "apps/web/staging/Chart.yaml": chart},
        )
    )
    (finding,) = findings
    assert finding.rule == "mixed-tools"
    assert "apps/web/staging (helm)" in finding.message
    assert "apps/web/production (kustomize)" in finding.message


def test_production_workload_without_limits_and_probes(tmp_path: Path) -> None:
    bare = CLEAN_DEPLOYMENT.split("          resources:")[0]
    findings = doctor(
        _repo(tmp_path, {"apps/web/production/deployment.yaml": bare}), render=_render_files
    )
    assert _rules(findings) == {"no-limits", "no-probes"}


def test_a_failed_render_is_a_finding(tmp_path: Path) -> None:
    def broken(app: AppSource, root: Path) -> list[Obj]:
        raise RenderError("kustomize: accumulating resources: boom")

    findings = doctor(_repo(tmp_path, {}), render=broken)
    assert _rules(findings) == {"render-failed"}


def test_invalid_yaml_is_a_finding_not_skipped(tmp_path: Path) -> None:
    findings = doctor(_repo(tmp_path, {"apps/web/production/broken.yaml": "a: [b\n"}))
    assert _rules(findings) == {"invalid-yaml"}


def test_the_articles_example_layout(tmp_path: Path) -> None:
    """The example repository follows the checklist except for probes in production."""
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    findings = doctor(tmp_path / "repo", render=None)
    assert findings == []


def test_sarif_names_every_rule_and_location(tmp_path: Path) -> None:
    app = CLEAN_APP.split("  syncPolicy:")[0]
    findings = doctor(_repo(tmp_path, {"clusters/web-production.yaml": app}))
    report = sarif(findings)
    run = report["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == set(RULES)
    (result,) = run["results"]
    assert result["ruleId"] == "no-automated-sync"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "clusters/web-production.yaml"
    assert location["region"]["startLine"] == 7


def test_an_invalid_app_spec_is_a_finding(tmp_path: Path) -> None:
    ks = (
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
        "  name: web\n  namespace: flux-system\nspec:\n  interval: 10m\n"
        "  path: ./apps/web/production\n  sourceRef:\n    kind: GitRepository\n    name: repo\n"
    )
    findings = doctor(_repo(tmp_path, {"clusters/flux/web.yaml": ks}))
    assert [f.rule for f in findings if f.rule == "invalid-app"] == ["invalid-app"]
    assert any("spec.prune" in f.message for f in findings)
