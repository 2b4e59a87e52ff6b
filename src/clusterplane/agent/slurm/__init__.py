"""The agent's Slurm runtime: a cluster's controller or a configless worker on this host.

`runtime.SlurmRuntime` converges a host to its `slurm` section (`section`) through the
host it acts on (`host`: this machine, or a namespaced test host), reports Slurm's view of
its nodes and applies drains and removals (`nodes`); `plugin` is the entry point the agent
loads.
"""
