"""ApplicationSet generators on fakes: the parameters each generator gives, as Argo CD's
generator pages document them, and the bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gitsail.kinds.argo_applicationset import parse_applicationset, render_applications
from gitsail.kinds.argo_applicationset_generators import (
    IN_CLUSTER,
    Cluster,
    GeneratorError,
    cluster_from_secret,
    generate,
)
from gitsail.policy import DEFAULT_POLICY


class FakeSources:
    def __init__(self, clusters: list[Cluster] = (), repo: Path | None = None) -> None:  # type: ignore[assignment]
        self._clusters = list(clusters)
        self.repo = repo
        self.checkouts: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    async def clusters(self) -> list[Cluster]:
        return self._clusters

    async def checkout(self, repo_url: str, revision: str) -> Path:
        self.checkouts.append((repo_url, revision))
        if self.fail is not None:
            raise self.fail
        assert self.repo is not None
        return self.repo


def appset(generators: list[Any], name: str = "{{name}}", go: bool = False, **spec: Any) -> Any:
    return parse_applicationset(
        {
            "metadata": {"name": "s", "namespace": "argocd", "uid": "u"},
            "spec": {
                "goTemplate": go,
                "generators": generators,
                "template": {"metadata": {"name": name}, "spec": {"project": "default"}},
                **spec,
            },
        }
    )


async def params(s: Any, sources: FakeSources | None = None, **policy: Any) -> list[dict[str, Any]]:
    pol = dataclasses.replace(DEFAULT_POLICY, **policy)
    generated = await generate(s, sources or FakeSources(), pol)
    return [p for _, p in generated.sets]


PROD = Cluster("prod", "https://prod:6443", labels=(("env", "prod"),), annotations=(("a", "1"),))


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# -- list -------------------------------------------------------------------------------------


async def test_list_gives_each_element_and_flattens_values() -> None:
    s = appset([{"list": {"elements": [{"cluster": "dev", "url": "u", "values": {"x": "1"}}]}}])
    assert await params(s) == [{"cluster": "dev", "url": "u", "values.x": "1"}]


async def test_list_elements_yaml_adds_items() -> None:
    s = appset([{"list": {"elements": [{"a": "1"}], "elementsYaml": "- a: '2'\n- a: '3'\n"}}])
    assert [p["a"] for p in await params(s)] == ["1", "2", "3"]


async def test_list_elements_stay_nested_under_go_template() -> None:
    s = appset([{"list": {"elements": [{"a": {"b": "c"}}]}}], go=True, name="{{.a.b}}")
    assert await params(s) == [{"a": {"b": "c"}}]


# -- clusters ---------------------------------------------------------------------------------


async def test_clusters_include_the_implicit_in_cluster_and_each_secret() -> None:
    s = appset([{"clusters": {}}])
    found = await params(s, FakeSources([PROD]))
    assert [(p["name"], p["server"]) for p in found] == [
        ("in-cluster", IN_CLUSTER),
        ("prod", "https://prod:6443"),
    ]
    assert found[1]["metadata.labels.env"] == "prod"
    assert found[1]["metadata.annotations.a"] == "1"


async def test_a_label_selector_excludes_the_unlabelled_in_cluster() -> None:
    s = appset([{"clusters": {"selector": {"matchLabels": {"env": "prod"}}}}])
    assert [p["name"] for p in await params(s, FakeSources([PROD]))] == ["prod"]
    s = appset(
        [
            {
                "clusters": {
                    "selector": {
                        "matchExpressions": [
                            {"key": "env", "operator": "NotIn", "values": ["prod"]}
                        ]
                    }
                }
            }
        ]
    )
    assert [p["name"] for p in await params(s, FakeSources([PROD]))] == ["in-cluster"]


async def test_cluster_values_are_filled_with_the_cluster_parameters() -> None:
    s = appset([{"clusters": {"values": {"branch": "{{metadata.labels.env}}-main"}}}])
    found = await params(s, FakeSources([PROD]))
    assert found[1]["values.branch"] == "prod-main"
    s = appset([{"clusters": {"values": {"b": "{{.name}}"}}}], go=True, name="{{.name}}")
    assert (await params(s, FakeSources([PROD])))[1]["values"] == {"b": "prod"}


async def test_a_secret_for_the_in_cluster_server_replaces_the_implicit_one() -> None:
    local = Cluster("local", IN_CLUSTER)
    s = appset([{"clusters": {}}])
    assert [p["name"] for p in await params(s, FakeSources([local]))] == ["local"]


def test_cluster_from_secret_reads_name_and_server_not_credentials() -> None:
    secret = {
        "metadata": {"name": "c", "labels": {"env": "prod"}},
        "data": {"name": "cHJvZA==", "server": "aHR0cHM6Ly9wcm9kOjY0NDMv"},
        "stringData": {"config": "{}"},
    }
    cluster = cluster_from_secret(secret)
    assert cluster == Cluster("prod", "https://prod:6443", labels=(("env", "prod"),))


# -- git --------------------------------------------------------------------------------------


async def test_git_directories_match_one_segment_and_honour_exclude(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {"apps/a/k.yaml": "", "apps/b/k.yaml": "", "apps/c/d/k.yaml": "", "other/k.yaml": ""},
    )
    s = appset(
        [
            {
                "git": {
                    "repoURL": "https://git.example/r",
                    "revision": "main",
                    "directories": [{"path": "apps/*"}, {"path": "apps/b", "exclude": True}],
                }
            }
        ],
        name="{{path.basename}}",
    )
    sources = FakeSources(repo=repo)
    found = await params(s, sources)
    assert [p["path"] for p in found] == ["apps/a", "apps/c"]
    assert found[0] == {
        "path": "apps/a",
        "path.basename": "a",
        "path.basenameNormalized": "a",
        "path[0]": "apps",
        "path[1]": "a",
    }
    assert sources.checkouts == [("https://git.example/r", "main")]
    assert (await generate(s, sources)).requeue_after == 180.0


async def test_git_directories_under_go_template_and_a_path_prefix(tmp_path: Path) -> None:
    repo = write(tmp_path, {"apps/a/k.yaml": ""})
    gen = {"git": {"repoURL": "r", "directories": [{"path": "apps/*"}], "pathParamPrefix": "p"}}
    s = appset([gen], go=True, name="{{.p.path.basename}}")
    (found,) = await params(s, FakeSources(repo=repo))
    assert found["p"]["path"] == {
        "path": "apps/a",
        "basename": "a",
        "basenameNormalized": "a",
        "segments": ["apps", "a"],
    }


async def test_git_files_flatten_nested_keys_and_add_path_params(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "cluster-config/engineering/dev/config.json": (
                '{"aws_account": "123", "cluster": {"owner": "o@x", "name": "dev", "address": "https://d"}}'
            ),
            "cluster-config/engineering/prod/config.json": "cluster: {name: prod}\n",
        },
    )
    gen = {"git": {"repoURL": "r", "files": [{"path": "cluster-config/**/config.json"}]}}
    s = appset([gen], name="{{cluster.name}}")
    found = await params(s, FakeSources(repo=repo))
    assert found[0]["cluster.owner"] == "o@x"
    assert found[0]["aws_account"] == "123"
    assert found[0]["path"] == "cluster-config/engineering/dev"
    assert found[0]["path.basename"] == "dev"
    assert found[0]["path.filename"] == "config.json"
    assert found[0]["path[1]"] == "engineering"
    assert [p["cluster.name"] for p in found] == ["dev", "prod"]


async def test_a_file_that_is_a_list_makes_one_set_per_item(tmp_path: Path) -> None:
    repo = write(tmp_path, {"envs.yaml": "- {name: a}\n- {name: b}\n"})
    s = appset([{"git": {"repoURL": "r", "files": [{"path": "envs.yaml"}]}}])
    assert [p["name"] for p in await params(s, FakeSources(repo=repo))] == ["a", "b"]


async def test_an_oversized_or_unreadable_file_is_a_generator_error(tmp_path: Path) -> None:
    repo = write(tmp_path, {"big.yaml": "a: " + "x" * 100, "bad.yaml": "a: [\n"})
    s = appset([{"git": {"repoURL": "r", "files": [{"path": "big.yaml"}]}}])
    with pytest.raises(GeneratorError, match="over 50 bytes"):
        await params(s, FakeSources(repo=repo), appset_file_bytes=50)
    s = appset([{"git": {"repoURL": "r", "files": [{"path": "bad.yaml"}]}}])
    with pytest.raises(GeneratorError, match="not JSON or YAML"):
        await params(s, FakeSources(repo=repo))


async def test_an_unreachable_repository_is_a_generator_error() -> None:
    sources = FakeSources()
    sources.fail = OSError("connection refused")
    s = appset([{"git": {"repoURL": "r", "directories": [{"path": "*"}]}}])
    with pytest.raises(GeneratorError, match="connection refused"):
        await params(s, sources)


async def test_a_generator_error_never_shows_the_repository_password() -> None:
    url = "https://alice:hunter2@git.example/r.git"
    sources = FakeSources()
    sources.fail = OSError(f"cannot reach {url}")
    s = appset([{"git": {"repoURL": url, "directories": [{"path": "*"}]}}])
    with pytest.raises(GeneratorError) as caught:
        await params(s, sources)
    assert "hunter2" not in str(caught.value)
    assert "https://git.example/r.git" in str(caught.value)


async def test_too_many_parameter_sets_is_a_generator_error() -> None:
    s = appset([{"list": {"elements": [{"name": str(i)} for i in range(5)]}}])
    with pytest.raises(GeneratorError, match="more than 4 parameter sets"):
        await params(s, appset_parameter_sets=4)


# -- matrix and merge -------------------------------------------------------------------------


async def test_matrix_of_git_and_clusters_fills_the_second_with_the_first(tmp_path: Path) -> None:
    repo = write(tmp_path, {"apps/a/k.yaml": "", "apps/b/k.yaml": ""})
    s = appset(
        [
            {
                "matrix": {
                    "generators": [
                        {"git": {"repoURL": "r", "directories": [{"path": "apps/*"}]}},
                        {"clusters": {"values": {"app": "{{path.basename}}"}}},
                    ]
                }
            }
        ],
        name="{{path.basename}}-{{name}}",
    )
    found = await params(s, FakeSources([PROD], repo=repo))
    names = [(p["path.basename"], p["name"], p["values.app"]) for p in found]
    assert names == [
        ("a", "in-cluster", "a"),
        ("a", "prod", "a"),
        ("b", "in-cluster", "b"),
        ("b", "prod", "b"),
    ]
    apps = render_applications(s, (await generate(s, FakeSources([PROD], repo=repo))).sets)
    assert [a["metadata"]["name"] for a in apps] == [
        "a-in-cluster",
        "a-prod",
        "b-in-cluster",
        "b-prod",
    ]


async def test_matrix_key_with_two_values_is_an_error() -> None:
    s = appset(
        [
            {
                "matrix": {
                    "generators": [
                        {"list": {"elements": [{"name": "a"}]}},
                        {"list": {"elements": [{"name": "b"}]}},
                    ]
                }
            }
        ]
    )
    with pytest.raises(GeneratorError, match="two values"):
        await params(s)


async def test_merge_overrides_base_sets_that_agree_on_the_merge_keys() -> None:
    s = appset(
        [
            {
                "merge": {
                    "mergeKeys": ["name"],
                    "generators": [
                        {"clusters": {"values": {"kafka": "true", "redis": "false"}}},
                        {"list": {"elements": [{"name": "prod", "values.redis": "true"}]}},
                        {"list": {"elements": [{"name": "nowhere", "values.redis": "x"}]}},
                    ],
                }
            }
        ]
    )
    found = await params(s, FakeSources([PROD]))
    assert [(p["name"], p["values.kafka"], p["values.redis"]) for p in found] == [
        ("in-cluster", "true", "false"),
        ("prod", "true", "true"),
    ]


async def test_a_post_selector_filters_parameter_sets() -> None:
    s = appset(
        [
            {
                "list": {"elements": [{"name": "a", "env": "prod"}, {"name": "b", "env": "dev"}]},
                "selector": {"matchLabels": {"env": "prod"}},
            }
        ]
    )
    assert [p["name"] for p in await params(s)] == ["a"]


async def test_a_generator_template_is_merged_over_the_sets() -> None:
    s = appset([{"list": {"elements": [{"name": "a"}], "template": {"spec": {"project": "p2"}}}}])
    ((template, _),) = (await generate(s, FakeSources())).sets
    assert template["spec"]["project"] == "p2"
    assert template["metadata"]["name"] == "{{name}}"
