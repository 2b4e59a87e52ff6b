"""Persistence: SQLAlchemy rows, the engine, leases and Alembic migrations."""
