"""Schemathesis hooks for Enclave's contract test (crates/enclave/tests/api/contract.rs).

Every request is signed in as the test organization's owner. Some operations legitimately end
the session they run in (logout, refresh-token reuse), so the token is fetched again after a 401
rather than leaving those operations out.
"""

import os

import requests
import schemathesis

URL = os.environ["ENCLAVE_CONTRACT_URL"]
EMAIL = os.environ["ENCLAVE_CONTRACT_EMAIL"]
PASSWORD = os.environ["ENCLAVE_CONTRACT_PASSWORD"]


def _login():
    r = requests.post(
        f"{URL}/v1/auth/login",
        json={"email": EMAIL, "password": PASSWORD},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["token"]


@schemathesis.auth(retry_on=[401])
class OwnerToken:
    """The owner's access token; signed in again after any 401."""

    def get(self, case, ctx):
        return _login()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
