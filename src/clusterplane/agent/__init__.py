"""The node agent (`clusterplane agent`): the daemon that makes a host a cluster node."""
