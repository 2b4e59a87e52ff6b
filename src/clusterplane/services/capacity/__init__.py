"""Capacity: the fleet and its hosts, the catalog, placement and its cache, claims,
capacity pools, reservations (the calendar) and per-project quotas.
"""
