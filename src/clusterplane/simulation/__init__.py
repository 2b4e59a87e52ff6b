"""The simulated fleet: drivers, fault model, fault injection and simulated check outcomes.

Wired in only by `app` (`simulation.wiring`); `services`, `controllers` and `api` never
import this package (an import-linter contract), so nothing there knows whether a host is
simulated. It may use them: the fault controller is a `controllers.health` row step, the
fault API an ordinary router on `api.deps`.
"""
