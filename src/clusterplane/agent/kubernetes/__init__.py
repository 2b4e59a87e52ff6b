"""The agent's Kubernetes runtime: a cluster's control plane or a GPU worker on this host.

`runtime.KubernetesRuntime` converges a host to its `kubernetes` section (`section`); the
control plane (`control`: etcd, API server, scheduler, controller-manager, certificates
from `pki`) or the worker (`worker`: containerd, kubelet, the device plugin of `devices`
over `deviceapi`, the lo127 pod network of `cni` and `network`, the kubelet probe of
`probe`), their processes (`daemons`, `processes`), the host's shared pieces (`host`),
the Nodes as the API server (`api`) reports them (`nodes`), and the entry point the agent
loads (`plugin`).
"""
