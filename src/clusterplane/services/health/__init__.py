"""Health: signals and their facts, active checks and acceptance, remediations and the
repairs that carry them out, and recovery after a restart.
"""
