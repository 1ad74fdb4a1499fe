"""A freshly generated service-account key, for tests that prove keys never reach logs."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def service_account_key() -> tuple[dict[str, Any], str]:
    """(key file contents, the PEM private key in it). The token URI is a closed
    loopback port, so nothing is ever sent anywhere."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account", "project_id": "relay-secret-test",
        "private_key_id": "0123456789abcdef", "private_key": pem,
        "client_email": "worker@relay-secret-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "http://127.0.0.1:9/token",
    }
    return info, pem
