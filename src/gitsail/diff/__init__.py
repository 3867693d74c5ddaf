"""Desired-versus-live comparison (pure functions, no I/O).

``diff_resource(desired, live, rules=...)`` compares the result of a server-side apply dry run
with the live object: both are normalized (``normalize``), Secrets are redacted on both sides
before anything else looks at them (``redact``), ignoreDifferences rules remove fields
(``ignore``: JSON pointers, jq path expressions, managedFields managers via ``fields``), and
the result is a ``ResourceDiff`` with status, changed JSON pointers and a unified YAML diff
(``compare``). ``attribute_drift`` names the field managers behind each change (``drift``).

Exceptions: ``DiffError`` (bad rules or input; messages never quote object data).
"""

from gitsail.diff.compare import ResourceDiff, changed_paths, diff_resource
from gitsail.diff.drift import DriftAttribution, attribute_drift
from gitsail.diff.errors import DiffError
from gitsail.diff.ignore import IgnoreRule, apply_ignore_rules, parse_ignore_differences
from gitsail.diff.normalize import normalize
from gitsail.diff.redact import redact_pair, redact_secret

__all__ = [
    "DiffError",
    "DriftAttribution",
    "IgnoreRule",
    "ResourceDiff",
    "apply_ignore_rules",
    "attribute_drift",
    "changed_paths",
    "diff_resource",
    "normalize",
    "parse_ignore_differences",
    "redact_pair",
    "redact_secret",
]
