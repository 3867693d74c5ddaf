"""The SOPS tests reuse the Flux Kustomization fixtures (a namespace's Flux objects and a
reconciler run one pass at a time)."""

from tests.integration.flux.test_kustomization import (  # noqa: F401 - fixtures
    flux,
    ks_kube,
    ks_reconciler,
)
