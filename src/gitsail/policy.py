"""The operator's limits on tenant input: one frozen record, read once at start-up.

Everything an outsider controls (an Application's spec, a repository's files, a chart, a
webhook body) is bounded by a number or a list here, so a limit has one name, one default
and one place where an operator changes it. Stages take a ``Policy`` (``DEFAULT_POLICY``
when none is given) and never read the environment themselves.

Operators set fields with environment variables on the controller (the Deployment's
``env``): ``GITSAIL_<FIELD NAME IN UPPER CASE>``, e.g. ``GITSAIL_ALLOW_FILE_URLS=true`` or
``GITSAIL_DENIED_NETWORKS=169.254.0.0/16,fd00:ec2::254/128``. ``Policy.from_env`` parses
them and refuses a value it cannot read (a limit that cannot be parsed is not skipped).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DEFAULT_POLICY", "Policy", "PolicyError"]

MiB = 1024 * 1024
GiB = 1024 * MiB


class PolicyError(ValueError):
    """An operator setting could not be read; the process refuses to start with it."""


@dataclass(frozen=True)
class Policy:
    # --- sources (git, Helm repositories, kustomize remote bases) ---
    # file:// URLs and bare paths reach every repository on the controller's disk, including
    # the shared mirrors; only the CLI on a developer's machine, the demo and tests allow them.
    allow_file_urls: bool = False
    # Hosts in these networks are never contacted (cloud metadata and link-local by default).
    denied_networks: tuple[str, ...] = (
        "169.254.0.0/16",
        "fe80::/10",
        "100.100.100.200/32",
        "fd00:ec2::254/128",
    )
    git_timeout: float = 120.0
    source_cache_bytes: int = 10 * GiB
    chart_cache_bytes: int = 2 * GiB
    # An app is served a cached commit only after an ls-remote with its own credentials
    # succeeded; the success is remembered per (repository, credentials) this long (seconds).
    repo_access_ttl: float = 60.0
    # --- artifacts the controller stores and serves (Flux GitRepository) ---
    artifact_bytes: int = 512 * MiB  # sum of the archived files' sizes, per artifact
    artifact_files: int = 100_000
    artifacts_kept: int = 2  # per object, the one in use included (Flux keeps 2)
    # --- Helm chart archives ---
    chart_archive_bytes: int = 20 * MiB
    chart_unpacked_bytes: int = 200 * MiB
    chart_entries: int = 10_000
    # --- Helm repository indexes (index.yaml) ---
    helm_index_bytes: int = 64 * MiB  # one index download
    # Parsed indexes kept in memory, shared by every chart of a repository (their raw size).
    helm_index_cache_bytes: int = 256 * MiB
    # --- OCI registries (charts and Flux OCIRepository artifacts) ---
    oci_manifest_bytes: int = 4 * MiB  # a manifest, a page of tags, a chart's config blob
    oci_tags: int = 10_000  # tags listed to resolve a version range or "latest"
    oci_layer_bytes: int = 256 * MiB  # one layer pulled for an OCIRepository (in memory)
    # --- YAML read from a repository, a chart's output or a tool's output ---
    yaml_document_bytes: int = 32 * MiB
    yaml_aliases: int = 10_000
    yaml_depth: int = 200
    yaml_documents: int = 20_000
    # Nodes that alias expansion may add to one document (an alias bomb adds hundreds of
    # millions from a few hundred bytes).
    yaml_alias_nodes: int = 1_000_000
    # --- renders (helm, kustomize, jsonnet) ---
    render_timeout: float = 90.0
    render_memory_bytes: int = 2 * GiB
    render_output_bytes: int = 128 * MiB
    # --- jq path expressions (ignoreDifferences.jqPathExpressions) ---
    jq_timeout: float = 1.0
    jq_memory_bytes: int = 256 * MiB
    # --- webhook endpoint ---
    webhook_body_bytes: int = 25 * MiB
    webhook_body_timeout: float = 10.0
    webhook_concurrency: int = 32
    webhook_replay_window: int = 10_000
    # --- ApplicationSets ---
    appset_parameter_sets: int = 10_000  # parameter sets (Applications) one set may make
    appset_file_bytes: int = 1 * MiB  # one file a git files generator reads
    # A pass that would delete more than this share of a set's Applications deletes none.
    appset_delete_share: float = 0.5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policy:
        """Defaults overridden by ``GITSAIL_<FIELD>`` variables; unreadable values refuse."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"GITSAIL_{f.name.upper()}")
            if raw is None:
                continue
            changes[f.name] = _parse(f.name, str(f.type), raw)
        return dataclasses.replace(DEFAULT_POLICY, **changes)


def _parse(name: str, type_name: str, raw: str) -> Any:
    text = raw.strip()
    try:
        if type_name == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if type_name == "int":
            value: int | float = int(text)
        elif type_name == "float":
            value = float(text)
        elif type_name.startswith("tuple"):
            return tuple(part.strip() for part in text.split(",") if part.strip())
        else:  # pragma: no cover - every field has one of the types above
            raise ValueError(type_name)
    except ValueError:
        raise PolicyError(
            f"GITSAIL_{name.upper()}={raw!r} is not a valid {type_name.split('[')[0]}"
        ) from None
    if value < 0:
        raise PolicyError(f"GITSAIL_{name.upper()}={raw!r} must not be negative")
    return value


DEFAULT_POLICY = Policy()
