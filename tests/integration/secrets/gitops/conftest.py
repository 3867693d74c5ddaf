"""The Sealed Secrets GitOps tests reuse the Application pipeline fixtures (an engine whose
control namespace is the test's namespace, repository credentials, the CRDs) and the second
namespace of the Sealed Secrets flow test."""

from tests.integration.app.conftest import (  # noqa: F401 - fixtures
    crds,
    engine,
    kube_client,
    repo_secret,
)
from tests.integration.secrets.test_sealed_flow import other_namespace  # noqa: F401 - fixture
