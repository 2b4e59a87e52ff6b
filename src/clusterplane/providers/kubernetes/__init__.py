"""KUBERNETES clusters on agent hosts: the flavour that runs each cluster's own Kubernetes."""

from clusterplane.providers.kubernetes.flavour import AgentKubernetesFlavour, cluster_name

__all__ = ["AgentKubernetesFlavour", "cluster_name"]
