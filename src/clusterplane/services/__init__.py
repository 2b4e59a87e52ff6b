"""Use cases: every status change and event goes through here."""
