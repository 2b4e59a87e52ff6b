"""The simulated fleet driver: the embedded default and the main test double."""

from clusterplane.providers.simulated.driver import SimulatedProvider

__all__ = ["SimulatedProvider"]
