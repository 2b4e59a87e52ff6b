"""Who calls and under which key: API keys and callers, projects and organizations,
idempotent requests, ids, and the sealing of secrets at rest.
"""
