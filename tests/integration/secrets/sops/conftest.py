"""The SOPS tests reuse the Flux Kustomization fixtures (a namespace's Flux objects and a
reconciler run one pass at a time) and the Application pipeline fixtures (an engine whose
control namespace is the test's namespace, repository credentials, the CRDs)."""

from tests.integration.app.conftest import (  # noqa: F401 - fixtures
    crds,
    engine,
    kube_client,
    repo_secret,
)
from tests.integration.flux.test_kustomization import (  # noqa: F401 - fixtures
    flux,
    ks_kube,
    ks_reconciler,
)
