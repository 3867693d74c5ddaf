from pathlib import Path

import pytest

from gitsail import toolchain


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "tools"
    (tools / "k8s").mkdir(parents=True)
    (tools / "k8s" / "go.mod").write_text(
        "module x\n\ngo 1.26\n\nrequire (\n\tk8s.io/kubernetes v1.36.3\n"
        "\tk8s.io/kubernetes-extra v9.9.9\n)\n"
    )
    monkeypatch.setenv("GITSAIL_TOOLS_DIR", str(tools))
    monkeypatch.setenv("GITSAIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    return tmp_path


def _k8s() -> toolchain.Tool:
    return next(t for t in toolchain.TOOLS if t.name == "kubernetes")


def test_version_comes_from_the_wrapper_go_mod(fake_tools: Path) -> None:
    assert _k8s().version == "v1.36.3"


def test_cache_entry_is_keyed_by_tool_and_version_outside_the_repo(fake_tools: Path) -> None:
    assert _k8s().path == fake_tools / "cache" / "bin" / "kubernetes-v1.36.3"


def test_partial_build_is_not_taken_for_a_built_tool(fake_tools: Path) -> None:
    entry = _k8s().path
    entry.mkdir(parents=True)
    (entry / "kube-apiserver").write_text("")
    assert not _k8s().is_built()
    assert _k8s() in toolchain.missing_tools(["kubernetes"])
    for name in _k8s().binaries:
        (entry / name).write_text("")
    assert _k8s().is_built()
    assert toolchain.missing_tools(["kubernetes"]) == []


def test_find_binary_prefers_override_then_cache(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _k8s().path
    entry.mkdir(parents=True)
    (entry / "kubectl").write_text("")
    assert toolchain.find_binary("kubectl") == entry / "kubectl"
    monkeypatch.setenv("GITSAIL_BIN_KUBECTL", "/opt/kubectl")
    assert toolchain.find_binary("kubectl") == Path("/opt/kubectl")


def test_missing_binary_error_says_how_to_build_it(fake_tools: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gitsail dev tools build"):
        toolchain.find_binary("kube-apiserver")


def test_go_mod_without_the_pinned_module_is_a_clear_error(fake_tools: Path) -> None:
    (fake_tools / "tools" / "k8s" / "go.mod").write_text("module x\n")
    with pytest.raises(toolchain.BuildError, match=r"does not require k8s\.io/kubernetes"):
        _ = _k8s().version


def test_kubernetes_binaries_get_a_real_version_stamped_in() -> None:
    flags = " ".join(_k8s().ldflags("v1.36.3"))
    assert "k8s.io/component-base/version.gitVersion=v1.36.3" in flags
    assert "k8s.io/component-base/version.gitMinor=36" in flags
    assert "k8s.io/client-go/pkg/version.gitMajor=1" in flags


def test_the_repository_pins_every_tool() -> None:
    # Guards the real tools/ directory: each wrapper module names its version.
    for tool in toolchain.TOOLS:
        assert tool.version.startswith("v"), tool.name


def test_jsonnet_is_the_go_jsonnet_argo_cd_evaluates_with() -> None:
    tool = next(t for t in toolchain.TOOLS if t.name == "jsonnet")
    assert tool.packages == ("github.com/google/go-jsonnet/cmd/jsonnet",)
    assert tool.version_module == "github.com/google/go-jsonnet"
    assert tool.version.startswith("v0.")
    assert tool.path.name == f"jsonnet-{tool.version}"
    assert toolchain._tool_for_binary("jsonnet") is tool


def test_the_oci_registry_is_pinned_like_the_other_tools() -> None:
    registry = next(t for t in toolchain.TOOLS if t.name == "distribution")
    assert registry.binaries == ("registry",)
    assert registry.packages == ("github.com/distribution/distribution/v3/cmd/registry",)
    version = registry.version  # read from tools/registry/go.mod, the pin's one home
    assert version.startswith("v3.")
    assert registry.path.name == f"distribution-{version}"
    assert f"-X github.com/distribution/distribution/v3/version.version={version}" in (
        registry.ldflags(version)
    )
