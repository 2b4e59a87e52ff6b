"""The host driver for hosts run by node agents (`clusterplane agent`)."""

from clusterplane.providers.agent.driver import AgentHostDriver

__all__ = ["AgentHostDriver"]
