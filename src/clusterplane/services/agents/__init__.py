"""Hosts run by node agents: enrollment and its tokens, signed requests, status and health
reports, the checks they run, the assignments they converge to, and what a node gives
its cluster's users.
"""
