"""Password hashing (argon2id). Users created through OIDC later will have no password hash."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

_hasher = PasswordHasher()  # argon2id, library defaults (t=3, m=64 MiB, p=4)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False
