"""SQLAlchemy models. Migrations live in migrations/versions/ (alembic)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))  # None for OIDC-only users later
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True)  # unused so far

    def check_password(self, password: str) -> bool:
        from ledgerline.auth import passwords

        return self.password_hash is not None and passwords.verify(password, self.password_hash)


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), index=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # INV-2026-0412
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    total_cents: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pdf_blob: Mapped[bytes | None] = mapped_column(LargeBinary)

    def as_dict(self) -> dict:
        return {"id": self.id, "number": self.number, "status": self.status,
                "total_cents": self.total_cents, "has_pdf": self.pdf_blob is not None}


class WebhookEvent(Base):
    """One row per Stripe event id ever processed (migration 0007, May 2026)."""

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)  # evt_..., uq_webhook_events_event_id
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Job(Base):
    """Postgres-backed job queue (migration 0009, June 2026)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String)
