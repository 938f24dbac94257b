"""OIDC login (authorization code + PKCE). Not wired into the app yet.

Plan agreed 2026-06-22:
- OIDC replaces only the *login step*. After the callback we create an ordinary
  server-side session with RedisSessionStore.create(); get_current_user and every
  route that depends on it stay as they are.
- Tokens never leave the server and are never logged: we keep the verified ID-token
  claims we need (sub, email) and discard the access and refresh tokens.
- No third-party OIDC client that logs token responses (the March attempt with
  authlib-lite was reverted for exactly that reason).
"""

from __future__ import annotations

from ledgerline import settings
from ledgerline.auth.session import CurrentUser

OIDC_SCOPES = ("openid", "email", "profile")


class OIDCNotConfigured(RuntimeError):
    pass


def _require_config() -> None:
    if not (settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID):
        raise OIDCNotConfigured("set OIDC_ISSUER and OIDC_CLIENT_ID")


def build_authorization_url(state: str, code_challenge: str) -> str:
    _require_config()
    raise NotImplementedError("OIDC login: discovery + authorize URL")


def handle_callback(code: str, state: str, code_verifier: str) -> CurrentUser:
    _require_config()
    raise NotImplementedError("OIDC login: token exchange, ID token verification, user lookup")
