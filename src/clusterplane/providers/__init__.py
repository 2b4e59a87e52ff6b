"""Infrastructure drivers. A driver gets plain dataclasses in and out, never rows.

`contracts` (the roles: host driver, check feature, cluster flavour, storage driver),
`models` (specs and typed progress), `registry` (which driver serves which host, cluster
type and region). Drivers live in their own packages: the simulated ones in
`clusterplane.simulation`, real ones under `providers/`.
"""
