"""Background reconcilers: level-triggered, idempotent, safe to crash at any line."""
