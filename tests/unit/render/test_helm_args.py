"""What reaches helm's argv: checked against helm's own rules, never readable as a flag.

The argv is captured from a fake runner; the round trips through the real helm binary are
in tests/integration/render/test_render_tools.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from gitsail.kinds.argo_application import render_options
from gitsail.render import RenderError
from gitsail.render._helm import (
    check_api_version,
    check_kube_version,
    check_namespace,
    check_release_name,
    check_set_key,
    helm_template,
    set_value,
)
from gitsail.render._process import ToolRunner
from gitsail.render._workspace import walk_inside


class RecordingRunner(ToolRunner):
    """Records argv instead of running anything; helm prints nothing."""

    def __init__(self, home: Path) -> None:
        super().__init__(home=home)
        self.argvs: list[list[str]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        what: str,
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        time_limit: float | None = None,
    ) -> bytes:
        self.argvs.append(list(argv))
        return b""


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "chart" / "templates").mkdir(parents=True)
    (root / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 1.0.0\n")
    (root / "chart" / "files").mkdir()
    (root / "chart" / "files" / "cfg.txt").write_text("cfg")
    return root / "chart"


async def _argv(chart: Path, source: dict[str, object], **kw: object) -> list[str]:
    runner = RecordingRunner(chart.parent.parent / "home")
    work = chart.parent.parent / "work"
    work.mkdir(exist_ok=True)
    options = render_options(
        source,
        app_name=str(kw.get("app_name", "myapp")),
        namespace=str(kw.get("namespace", "default")),
    )
    await helm_template(
        runner,
        Path("/usr/bin/helm"),
        chart_dir=chart,
        root=chart.parent,
        work=work,
        options=options,
        kube_version=str(kw.get("kube_version", "v1.30.0")),
        api_versions=list(kw.get("api_versions", ["v1", "apps/v1"])),  # type: ignore[call-overload]
        display="chart",
    )
    (argv,) = runner.argvs
    return argv


@pytest.mark.parametrize(
    "name",
    [
        "--post-renderer=sh",
        "-x",
        "Upper",
        "a_b",
        "a..b",
        "-a",
        "a-",
        "x" * 54,
        "a b",
        "",
    ],
)
def test_release_names_helm_would_refuse_are_refused(name: str) -> None:
    with pytest.raises(RenderError, match="not a valid Helm release name"):
        check_release_name(name, "spec.source.helm.releaseName")


@pytest.mark.parametrize("name", ["web", "my-app.v2", "a", "x" * 53, "0abc"])
def test_release_names_helm_accepts_pass(name: str) -> None:
    assert check_release_name(name, "releaseName") == name


async def test_release_name_that_looks_like_a_flag_never_reaches_helm(chart: Path) -> None:
    with pytest.raises(RenderError, match="releaseName '--post-renderer=sh' is not a valid"):
        await _argv(chart, {"helm": {"releaseName": "--post-renderer=sh"}})


async def test_positionals_come_after_a_double_dash_and_flags_carry_their_value(
    chart: Path,
) -> None:
    argv = await _argv(
        chart,
        {
            "helm": {
                "releaseName": "rel",
                "parameters": [{"name": "image.tag", "value": "1.2"}],
                "fileParameters": [{"name": "cfg", "path": "files/cfg.txt"}],
                "valueFiles": ["Chart.yaml"],
            }
        },
    )
    dash = argv.index("--")
    assert argv[dash + 1 :] == ["rel", str(chart)]
    flags = argv[2:dash]
    assert all(f.startswith("--") for f in flags)
    assert all("=" in f for f in flags if f not in ("--include-crds", "--skip-tests"))
    assert "--namespace=default" in flags
    assert "--kube-version=v1.30.0" in flags
    assert "--set=image.tag=1\\.2" in flags
    assert f"--set-file=cfg={set_value(str((chart / 'files' / 'cfg.txt').resolve()))}" in flags


@pytest.mark.parametrize(
    ("helm", "message"),
    [
        ({"namespace": "--kubeconfig=/x"}, "not a valid namespace name"),
        ({"namespace": "a" * 64}, "not a valid namespace name"),
        ({"kubeVersion": "--x"}, "is not a Kubernetes version"),
        ({"kubeVersion": "1.30,2"}, "is not a Kubernetes version"),
        ({"apiVersions": ["apps/v1,evil/v1"]}, "is not an API version"),
        ({"apiVersions": ["-a"]}, "is not an API version"),
    ],
)
async def test_capability_values_are_checked(
    chart: Path, helm: dict[str, object], message: str
) -> None:
    with pytest.raises(RenderError, match=message):
        await _argv(chart, {"helm": helm})


async def test_destination_namespace_and_cluster_capabilities_are_checked_too(
    chart: Path,
) -> None:
    with pytest.raises(RenderError, match="destination namespace '-n' is not a valid"):
        await _argv(chart, {}, namespace="-n")
    with pytest.raises(RenderError, match="cluster API versions"):
        await _argv(chart, {}, api_versions=["a,b"])
    assert check_kube_version("v1.31.2+k3s1", "v") == "v1.31.2+k3s1"
    assert check_kube_version("1.30", "v") == "1.30"
    assert check_api_version("monitoring.coreos.com/v1/ServiceMonitor", "a")
    assert check_namespace("kube-system", "n") == "kube-system"


async def test_an_app_name_helm_cannot_use_says_to_set_a_release_name(chart: Path) -> None:
    with pytest.raises(RenderError, match=r"set spec\.source\.helm\.releaseName"):
        await _argv(chart, {}, app_name="a" * 60)


async def test_a_bare_chart_directory_gets_a_valid_derived_release_name(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "My_Chart").mkdir(parents=True)
    (root / "My_Chart" / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 1.0.0\n")
    argv = await _argv(root / "My_Chart", {}, app_name="")
    assert argv[argv.index("--") + 1] == "my-chart"


@pytest.mark.parametrize(
    "key",
    [
        "leak=/etc/shadow,unused",
        "a,b",
        "a=b",
        ".a",
        "a.",
        "a..b",
        "[0]",
        "a[x]",
        "a[-1]",
        "a[0]b",
        "a]",
        "a\\",
        "",
        "a\nb",
    ],
)
def test_set_keys_that_are_not_exactly_one_key_are_refused(key: str) -> None:
    with pytest.raises(RenderError, match="is not a Helm value key"):
        check_set_key(key, "spec.source.helm.parameters[0].name")


@pytest.mark.parametrize(
    "key", ["a", "a.b", "a.b[0].c", "a[0][1]", "ann.kubernetes\\.io/name", "with space", "x\\=y"]
)
def test_set_keys_in_strvals_syntax_pass_unchanged(key: str) -> None:
    assert check_set_key(key, "k") == key


async def test_file_parameter_name_cannot_smuggle_a_second_assignment(chart: Path) -> None:
    # The reported attack: helm split this on the comma and read /etc/shadow.
    source = {
        "helm": {"fileParameters": [{"name": "leak=/etc/shadow,unused", "path": "files/cfg.txt"}]}
    }
    with pytest.raises(RenderError, match=r"fileParameters\[0\]\.name .* not a Helm value key"):
        await _argv(chart, source)


@pytest.mark.parametrize(
    "path", ["/etc/passwd/../../../../etc/passwd", "../../../etc/passwd", "../outside.txt"]
)
async def test_file_parameter_paths_stay_in_the_repository(
    chart: Path, tmp_path: Path, path: str
) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    source = {"helm": {"fileParameters": [{"name": "f", "path": path}]}}
    with pytest.raises(RenderError, match="is not a file in the repository"):
        await _argv(chart, source)


async def test_file_parameter_symlinked_out_of_the_repository_is_refused(
    chart: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    (chart / "files" / "link.txt").symlink_to(tmp_path / "outside.txt")
    source = {"helm": {"fileParameters": [{"name": "f", "path": "files/link.txt"}]}}
    with pytest.raises(RenderError, match="is not a file in the repository"):
        await _argv(chart, source)


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("a,b", "a\\,b"),
        ("a\\,b", "a\\\\\\,b"),
        ("C:\\dir", "C:\\\\dir"),
        ("k=v.x[0]", "k\\=v\\.x\\[0\\]"),
        ("{a,b}", "{a,b}"),
        ("{a},x={b}", "{a\\},x\\=\\{b}"),
        ("{not a list", "\\{not a list"),
        ("", ""),
    ],
)
def test_set_values_are_escaped_for_helms_strvals_parser(value: str, escaped: str) -> None:
    assert set_value(value) == escaped


async def test_value_file_with_a_comma_is_refused_because_helm_splits_on_it(
    chart: Path,
) -> None:
    (chart / "x,").mkdir()
    (chart / "x," / "v.yaml").write_text("a: 1\n")
    with pytest.raises(RenderError, match="splits the flag on commas"):
        await _argv(chart, {"helm": {"valueFiles": ["x,/v.yaml"]}})


# --- the chart tree (item 17) ----------------------------------------------------------


def test_walk_inside_refuses_a_link_out_of_the_repository_and_names_it(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "chart" / "files").mkdir(parents=True)
    (tmp_path / "shadow").write_text("root:x")
    (root / "chart" / "files" / "leak").symlink_to(tmp_path / "shadow")
    with pytest.raises(RenderError, match=r"chart/files/leak is a symbolic link to a path outside"):
        walk_inside(root / "chart", root)


def test_walk_inside_follows_links_inside_the_repository_into_their_content(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    (root / "chart").mkdir(parents=True)
    (root / "shared").mkdir()
    (root / "shared" / "ok.txt").write_text("ok")
    (root / "chart" / "shared").symlink_to(root / "shared")
    (root / "chart" / "loop").symlink_to(root / "chart")  # cycles are walked once
    files = walk_inside(root / "chart", root)
    assert [f.name for f in files] == ["ok.txt"]
    (root / "shared" / "leak").symlink_to("/etc/passwd")
    with pytest.raises(RenderError, match=r"chart/shared/leak is a symbolic link"):
        walk_inside(root / "chart", root)


def test_walk_inside_refuses_a_fifo(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "chart").mkdir(parents=True)
    os.mkfifo(root / "chart" / "pipe")
    with pytest.raises(RenderError, match="chart/pipe is not a regular file"):
        walk_inside(root / "chart", root)


async def test_helm_is_not_started_for_a_chart_with_a_link_out(chart: Path, tmp_path: Path) -> None:
    (tmp_path / "shadow").write_text("root:x")
    (chart / "files" / "shadow").symlink_to(tmp_path / "shadow")
    with pytest.raises(RenderError, match="files/shadow is a symbolic link"):
        await _argv(chart, {})


@pytest.mark.parametrize(
    "schema",
    [
        '{"$ref": "file:///etc/passwd"}',
        '{"properties": {"a": {"$ref": "http://169.254.169.254/latest"}}}',
        '{"$ref": "other.json"}',
        '{"$schema": "file:///etc/passwd"}',
        '{"items": [{"$dynamicRef": "https://evil.example/x"}]}',
    ],
)
async def test_schema_references_outside_the_schema_are_refused(chart: Path, schema: str) -> None:
    (chart / "values.schema.json").write_text(schema)
    with pytest.raises(RenderError, match=r"values\.schema\.json"):
        await _argv(chart, {})


async def test_local_schema_references_pass_and_skipping_validation_skips_the_check(
    chart: Path,
) -> None:
    (chart / "values.schema.json").write_text(
        '{"$schema": "http://json-schema.org/draft-07/schema#",'
        ' "properties": {"a": {"$ref": "#/definitions/a"}}, "definitions": {"a": {}}}'
    )
    await _argv(chart, {})
    (chart / "values.schema.json").write_text('{"$ref": "file:///etc/passwd"}')
    await _argv(chart, {"helm": {"skipSchemaValidation": True}})


async def test_file_dependency_outside_the_repository_is_refused(chart: Path) -> None:
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: web\nversion: 1.0.0\n"
        "dependencies:\n- name: other\n  version: 1.0.0\n  repository: file:///var/cache/x\n"
    )
    with pytest.raises(RenderError, match="'other' from file:///var/cache/x: the path is outside"):
        await _argv(chart, {})


async def test_a_nul_byte_in_an_argument_is_refused_not_a_crash(tmp_path: Path) -> None:
    runner = ToolRunner(home=tmp_path)
    with pytest.raises(RenderError, match="NUL character"):
        await runner.run(["/bin/true", "a\x00b"], cwd=tmp_path, what="helm template")
