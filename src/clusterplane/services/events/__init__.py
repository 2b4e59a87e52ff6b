"""What happened, told: the event log, webhooks and their outbox, and the feeds of the
console and the metrics endpoint.
"""
