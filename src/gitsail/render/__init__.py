"""Render: an Artifact plus kind-neutral ``RenderOptions`` → manifests (plain dicts).

Three tools, picked by ``detect_tool`` as Argo CD picks them: plain directories are read in
Python (``load_manifests``: YAML 1.1 the way Kubernetes reads it, LibYAML-backed); Kustomize
and Helm run the pinned upstream binaries (``kustomize build``, ``helm template``) in a
scrubbed environment, on private copies when anything must be written. ``Renderer`` caches
results by input digest, so an app whose inputs did not change is not rendered again.

Errors::

    RenderError        what failed, where (file:line or the tool's stderr), for which app path

Usage::

    renderer = Renderer()
    options = RenderOptions(app_name=name, namespace=ns)  # a kind adapter builds these
    rendered = await renderer.render(artifact, options, kube_version="v1.36.3")
    rendered.manifests  # tuple of dicts, in the order the tool emitted them
"""

from __future__ import annotations

from gitsail.render._errors import RenderError
from gitsail.render._generate import generate_kustomization
from gitsail.render._helm import check_namespace, check_release_name
from gitsail.render._manifests import dump_yaml, load_manifests
from gitsail.render._options import (
    DirectoryOptions,
    HelmFileParameter,
    HelmOptions,
    HelmParameter,
    JsonnetOptions,
    JsonnetVar,
    KustomizeOptions,
    KustomizeReplica,
    RenderOptions,
    detect_tool,
    jsonnet_lib,
    jsonnet_var,
)
from gitsail.render._process import ToolRunner, redact
from gitsail.render._renderer import Rendered, Renderer, RenderStats, cache_key, render_local
from gitsail.render._workspace import copy_artifact

__all__ = [
    "DirectoryOptions",
    "HelmFileParameter",
    "HelmOptions",
    "HelmParameter",
    "JsonnetOptions",
    "JsonnetVar",
    "KustomizeOptions",
    "KustomizeReplica",
    "RenderError",
    "RenderOptions",
    "RenderStats",
    "Rendered",
    "Renderer",
    "ToolRunner",
    "cache_key",
    "check_namespace",
    "check_release_name",
    "copy_artifact",
    "detect_tool",
    "dump_yaml",
    "generate_kustomization",
    "jsonnet_lib",
    "jsonnet_var",
    "load_manifests",
    "redact",
    "render_local",
]
