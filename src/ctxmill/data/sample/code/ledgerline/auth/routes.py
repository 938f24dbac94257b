"""Password login, logout and logout-everywhere."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ledgerline import settings
from ledgerline.auth.session import SESSION_COOKIE, CurrentUser, RedisSessionStore, get_current_user
from ledgerline.db.models import User
from ledgerline.db.session import get_db

router = APIRouter()


class LoginForm(BaseModel):
    email: str
    password: str


@router.post("/login")
def login(form: LoginForm, request: Request, response: Response, db: Session = Depends(get_db)):
    user = db.query(User).filter_by(email=form.email.lower()).one_or_none()
    if user is None or not user.check_password(form.password):
        raise HTTPException(401, "wrong email or password")
    store: RedisSessionStore = request.app.state.session_store
    token = store.create(CurrentUser(user.id, user.email, user.org_id, tuple(user.roles)))
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.SESSION_TTL_SECONDS,
        httponly=True, secure=settings.ENV != "dev", samesite="lax",
    )
    return {"ok": True}


@router.post("/logout")
def logout(request: Request, response: Response, user: CurrentUser = Depends(get_current_user)):
    request.app.state.session_store.revoke(request.state.session_token)
    response.delete_cookie(SESSION_COOKIE)
    return {"ok": True}


@router.post("/logout-everywhere")
def logout_everywhere(request: Request, response: Response,
                      user: CurrentUser = Depends(get_current_user)):
    count = request.app.state.session_store.revoke_all(user.id)
    response.delete_cookie(SESSION_COOKIE)
    return {"revoked": count}
