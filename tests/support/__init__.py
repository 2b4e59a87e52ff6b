"""Shared test helpers: real server processes and in-process engines."""
