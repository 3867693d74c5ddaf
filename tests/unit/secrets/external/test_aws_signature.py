"""Our SigV4 signature equals botocore's for the same request (botocore is a test dependency
through moto; the controller does not import it)."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.auth as botocore_auth  # pinned in requirements.lock (moto depends on it)
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gitsail.secrets.external.aws import sign_v4


@pytest.mark.parametrize("token", ["", "session-token-xyz"])
def test_signature_matches_botocore(token: str) -> None:
    url = "https://secretsmanager.us-west-2.amazonaws.com/"
    body = b'{"SecretId": "myapp/production/api-key"}'
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.GetSecretValue",
        "Host": "secretsmanager.us-west-2.amazonaws.com",
    }
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token or None)
    botocore_auth.SigV4Auth(creds, "secretsmanager", "us-west-2").add_auth(request)
    # Sign at the second botocore signed at.
    now = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = sign_v4(
        "POST", url, headers, body, region="us-west-2", service="secretsmanager",
        access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token=token, now=now,
    )  # fmt: skip
    assert ours["Authorization"] == request.headers["Authorization"]
    if token:
        assert ours["X-Amz-Security-Token"] == request.headers["X-Amz-Security-Token"]
