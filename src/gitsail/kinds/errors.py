"""Errors of the kind adapters: a spec that cannot be used as written.

```
ValueError
└── SpecError            a field is malformed; ``field`` is its path (``spec.ref.branch``)
    └── UnsupportedField a field Flux honours that gitsail does not implement yet: refused,
                         never silently ignored
SubstitutionError        postBuild substitution failed (undefined variable in strict mode,
                         bad variable name, bad expression, output over the limit)
```

Both are "stalled" errors in the controller's terms: retrying cannot help, only a change of
the spec (or of the repository's files, for substitution) can.
"""

from __future__ import annotations

__all__ = ["SpecError", "SubstitutionError", "UnsupportedField"]


class SpecError(ValueError):
    """A field of an object's spec is malformed; the message names the field's path."""

    def __init__(self, field: str, problem: str, *, subject: str = "") -> None:
        self.field = field
        self.problem = problem
        self.subject = subject  # e.g. "GitRepository flux-system/myapp"
        prefix = f"{subject}: " if subject else ""
        super().__init__(f"{prefix}{field}: {problem}")

    def about(self, subject: str) -> SpecError:
        """The same error, naming the object it is about."""
        return type(self)(self.field, self.problem, subject=subject)


class UnsupportedField(SpecError):
    """A field Flux honours and gitsail does not implement yet: refused with a message."""


class SubstitutionError(ValueError):
    """postBuild variable substitution failed; the message names the variable or object."""
