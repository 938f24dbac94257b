"""Support/admin endpoints. Every route needs the admin role."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ledgerline.auth.session import CurrentUser, get_current_user, require_role

router = APIRouter(dependencies=[Depends(require_role("admin"))])


@router.get("/whoami")
def whoami(user: CurrentUser = Depends(get_current_user)):
    return {"id": user.id, "email": user.email, "roles": list(user.roles)}


@router.post("/users/{user_id}/revoke-sessions")
def revoke_sessions(user_id: int, request: Request):
    """Lock a user out at once (stolen laptop, offboarding). Needs server-side sessions."""
    count = request.app.state.session_store.revoke_all(user_id)
    return {"user_id": user_id, "revoked": count}
