"""The FastAPI application: middleware order matters (sessions before debug logging)."""

from __future__ import annotations

from fastapi import FastAPI

from ledgerline.admin.routes import router as admin_router
from ledgerline.auth.routes import router as auth_router
from ledgerline.auth.session import RedisSessionStore, SessionMiddleware
from ledgerline.invoices.routes import router as invoices_router
from ledgerline.middleware.debug_logging import DebugLoggingMiddleware
from ledgerline.webhooks.stripe import router as stripe_router


def create_app(store: RedisSessionStore | None = None) -> FastAPI:
    app = FastAPI(title="ledgerline")
    app.state.session_store = store or RedisSessionStore.from_url()
    # Starlette runs the last-added middleware first: DebugLogging sees the request
    # after SessionMiddleware has resolved request.state.user.
    app.add_middleware(DebugLoggingMiddleware)
    app.add_middleware(SessionMiddleware)
    app.include_router(auth_router, prefix="/auth")
    app.include_router(invoices_router, prefix="/invoices")
    app.include_router(admin_router, prefix="/admin")
    app.include_router(stripe_router, prefix="/webhooks")
    return app


app = create_app()
