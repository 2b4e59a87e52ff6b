"""Clusters as users see them: their use cases, the views responses are read from,
credentials and kubeconfigs, add-ons, shared volumes and SSH access.
"""
