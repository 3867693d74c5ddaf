"""ApplicationSet templates: Argo CD's fasttemplate, the Go-template subset (examples from
Argo CD's GoTemplate documentation) and the rendered Application's checks."""

from __future__ import annotations

from typing import Any

import pytest

from gitsail.kinds.argo_applicationset import (
    RESOURCES_FINALIZER,
    RenderError,
    parse_applicationset,
    render_application,
    render_applications,
    render_value,
)
from gitsail.kinds.errors import SpecError, UnsupportedField
from gitsail.kinds.gotemplate import GoTemplate, TemplateError, render_go

CLUSTER = {
    "name": "engineering-dev",
    "server": "https://1.2.3.4",
    "metadata": {"labels": {"env": "staging"}},
    "path": {"basename": "guestbook", "path": "apps/guestbook", "segments": ["apps", "guestbook"]},
}


# -- Go templates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{.name}}-guestbook", "engineering-dev-guestbook"),
        ("{{.path.basename}}", "guestbook"),
        ("{{index .path.segments 0}}", "apps"),
        ("{{ .name | upper }}", "ENGINEERING-DEV"),
        ('{{ .name | replace "-" "." }}', "engineering.dev"),
        ("{{ trunc 5 .name }}", "engin"),
        ("{{ trunc -3 .name }}", "dev"),
        ('{{ default "none" .metadata.labels.env }}', "staging"),
        ('{{ default "none" .metadata.labels.zone }}', "none"),
        ("{{ .name | quote }}", '"engineering-dev"'),
        ("{{ toJson .metadata }}", '{"labels":{"env":"staging"}}'),
        ('{{ if eq .metadata.labels.env "staging" }}s{{ else }}p{{ end }}', "s"),
        ('{{ if eq .name "x" }}1{{ else if .server }}2{{ else }}3{{ end }}', "2"),
        ('{{ (index .metadata.labels "env") | lower }}', "staging"),
        ("a {{- .name -}} b", "aengineering-devb"),
        ("{{/* a comment */}}x", "x"),
        ("{{ .path.segments }}", "[apps guestbook]"),
        ("{{ .metadata }}", "map[labels:map[env:staging]]"),
        ('{{ printf "%s-%d" .name 3 }}', "engineering-dev-3"),
        ("{{ .name | normalize }}", "engineering-dev"),
        ("{{ .nothing }}", "<no value>"),
    ],
)
def test_go_template_renders_as_go_and_sprig_do(source: str, expected: str) -> None:
    assert render_go(source, CLUSTER) == expected


def test_missing_key_is_an_error_with_missingkey_error() -> None:
    with pytest.raises(TemplateError, match='no entry for key "nope"'):
        GoTemplate("{{.nope}}").render(CLUSTER, missingkey="error")


def test_field_of_a_missing_key_fails_even_without_missingkey_error() -> None:
    with pytest.raises(TemplateError, match="nil pointer"):
        render_go("{{.nope.deeper}}", CLUSTER)


def test_fasttemplate_syntax_under_go_template_is_an_undefined_function() -> None:
    with pytest.raises(TemplateError, match='function "cluster" not defined'):
        GoTemplate("{{cluster}}")


@pytest.mark.parametrize(
    "source", ["{{ if .a }}x", "{{ end }}", "{{ range .a }}", "{{ with .a }}{{ end }}", "{{"]
)
def test_templates_that_do_not_parse_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        GoTemplate(source)


# -- fasttemplate -----------------------------------------------------------------------------


def test_fasttemplate_replaces_known_keys_and_leaves_unknown_ones_as_written() -> None:
    params = {"cluster": "dev", "path.basename": "guestbook"}
    value = {"name": "{{cluster}}-{{ path.basename }}", "other": "{{ unknown }}", "n": 3}
    out = render_value(value, params, go=False, missingkey="default")
    assert out == {"name": "dev-guestbook", "other": "{{ unknown }}", "n": 3}


def test_fasttemplate_fills_map_keys_and_list_items() -> None:
    out = render_value({"{{k}}": ["{{v}}"]}, {"k": "a", "v": "b"}, go=False, missingkey="default")
    assert out == {"a": ["b"]}


# -- the Application --------------------------------------------------------------------------

ARTICLE: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "ApplicationSet",
    "metadata": {"name": "myapp", "namespace": "argocd", "uid": "u-1", "generation": 1},
    "spec": {
        "generators": [
            {
                "list": {
                    "elements": [
                        {"cluster": "development", "url": "https://kubernetes.default.svc"},
                        {"cluster": "staging", "url": "https://kubernetes.default.svc"},
                    ]
                }
            }
        ],
        "template": {
            "metadata": {"name": "myapp-{{cluster}}"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://git.example/m", "path": "overlays/{{cluster}}"},
                "destination": {"server": "{{url}}", "namespace": "myapp"},
            },
        },
    },
}


def test_rendered_application_is_owned_by_the_set_and_carries_the_resources_finalizer() -> None:
    appset = parse_applicationset(ARTICLE)
    app = render_application(appset, appset.template, {"cluster": "staging", "url": "https://x"})
    assert app["metadata"]["name"] == "myapp-staging"
    assert app["metadata"]["namespace"] == "argocd"
    assert app["metadata"]["finalizers"] == [RESOURCES_FINALIZER]
    (owner,) = app["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "name": "myapp",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert app["spec"]["source"]["path"] == "overlays/staging"
    assert app["spec"]["destination"]["server"] == "https://x"


def test_preserve_resources_on_deletion_leaves_the_finalizer_off() -> None:
    obj = {
        **ARTICLE,
        "spec": {**ARTICLE["spec"], "syncPolicy": {"preserveResourcesOnDeletion": True}},
    }
    appset = parse_applicationset(obj)
    app = render_application(appset, appset.template, {"cluster": "dev", "url": "u"})
    assert "finalizers" not in app["metadata"]


def test_an_unknown_key_left_in_the_name_is_an_invalid_name() -> None:
    appset = parse_applicationset(ARTICLE)
    with pytest.raises(RenderError, match="not a valid Application name"):
        render_application(appset, appset.template, {"url": "u"})


def test_go_template_missing_key_is_a_render_error_not_an_empty_name() -> None:
    spec = {
        **ARTICLE["spec"],
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "template": {"metadata": {"name": "myapp-{{.cluster}}"}, "spec": {"project": "default"}},
    }
    appset = parse_applicationset({**ARTICLE, "spec": spec})
    with pytest.raises(RenderError, match='no entry for key "cluster"'):
        render_application(appset, appset.template, {"url": "u"})


def test_template_patch_merges_into_the_rendered_application() -> None:
    spec = {
        **ARTICLE["spec"],
        "goTemplate": True,
        "template": {"metadata": {"name": "a-{{.cluster}}"}, "spec": {"project": "default"}},
        "templatePatch": (
            "{{- if .auto }}\nspec:\n  syncPolicy:\n    automated:\n      prune: true\n{{- end }}\n"
        ),
    }
    appset = parse_applicationset({**ARTICLE, "spec": spec})
    on = render_application(appset, appset.template, {"cluster": "x", "auto": True})
    off = render_application(appset, appset.template, {"cluster": "y", "auto": False})
    assert on["spec"] == {"project": "default", "syncPolicy": {"automated": {"prune": True}}}
    assert off["spec"] == {"project": "default"}


def test_two_parameter_sets_naming_one_application_are_refused() -> None:
    appset = parse_applicationset(ARTICLE)
    sets = [(appset.template, {"cluster": "a", "url": "u"})] * 2
    with pytest.raises(RenderError, match="two parameter sets"):
        render_applications(appset, sets)


def test_an_application_in_another_namespace_is_refused() -> None:
    appset = parse_applicationset(ARTICLE)
    template = {**appset.template, "metadata": {"name": "x", "namespace": "elsewhere"}}
    with pytest.raises(RenderError, match="set's namespace"):
        render_application(appset, template, {})


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"generators": []}, SpecError),
        ({"syncPolicy": {"applicationsSync": "delete-all"}}, SpecError),
        ({"strategy": {"type": "Canary"}}, UnsupportedField),
        ({"strategy": {"type": "RollingSync"}}, SpecError),  # no steps
        (
            {"strategy": {"type": "RollingSync", "rollingSync": {"steps": [{"maxUpdate": "x"}]}}},
            SpecError,
        ),
        ({"generators": [{"pullRequest": {}}]}, UnsupportedField),
        ({"templatePatch": "spec: {}"}, SpecError),  # without goTemplate
        ({"goTemplateOptions": ["missingkey=maybe"]}, SpecError),
    ],
)
def test_specs_gitsail_cannot_honour_are_refused(change: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        parse_applicationset({**ARTICLE, "spec": {**ARTICLE["spec"], **change}})
