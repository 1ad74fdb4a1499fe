"""Freshly generated service-account keys, for tests that prove keys never reach text."""

from __future__ import annotations

import secrets
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
        "private_key_id": secrets.token_hex(20), "private_key": pem,
        "client_email": "worker@relay-secret-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "http://127.0.0.1:9/token",
    }
    return info, pem


def corrupted(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with a private key google-auth cannot load (a body line missing),
    though it still looks like a key file: it passes the settings' checks."""
    lines = info["private_key"].splitlines()
    return {**info, "private_key": "\n".join(lines[:5] + lines[6:]) + "\n"}


def secret_pieces(info: dict[str, Any]) -> list[str]:
    """What must never appear in any text: the private_key_id and a 40-character
    slice of every line of the PEM body (so a key cut anywhere is still caught,
    whether its newlines are raw or escaped)."""
    body = info["private_key"].splitlines()[2:-1]  # the first line is alike in every key
    return [info["private_key_id"], *(line[12:52] for line in body if len(line) >= 52)]


def leaked(text: str, info: dict[str, Any]) -> list[str]:
    """The pieces of ``info``'s secrets found in ``text`` (empty: nothing leaked)."""
    return [piece for piece in secret_pieces(info) if piece in text]
