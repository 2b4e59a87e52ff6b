"""The node agent (`clusterplane agent`): the daemon that makes a host a cluster node.

It dials out to the control plane and never listens: it enrolls once with a join token
(`identity`, `client`), then long-polls its host's assignment and converges to it
(`converge` and one module per concern: `hostname`, `users`, `sshd`, `mounts`, `secrets`,
`runtimes`), reports status every few seconds (its heartbeat), and turns NVML events and
kernel-log XIDs into health events (`nvml`, `kmsg`, `health`). `daemon` ties them together.

It imports no server code: only the standard library, httpx, cryptography, pydantic and
`clusterplane.domain.agent_protocol` (the wire models both sides share). Everything that
touches the system goes through `hostops.HostOps`, whose root prefix lets tests run it
against a temporary directory or inside a private mount namespace.
"""
