"""The host's side of the pod network: its sysctls and the routes to the other workers' pods.

Pods live in 127.x subnets (the lo127 CNI plugin), so every host of the cluster accepts
127.x on its interfaces (`route_localnet`), a worker forwards for its pods
(`ip_forward`), and each host routes every other worker's pod subnet to that worker
(`<pod cidr> via <worker address> table local`: 127.x destinations are otherwise local):
the control plane's so that pods reach the API server and get its answers. `prepare`
records each sysctl's value before its first change and the routes it added; `restore`
puts back exactly that.
"""

from __future__ import annotations

import ipaddress

from clusterplane.agent.kubernetes.daemons import Record
from clusterplane.agent.kubernetes.host import HostError, HostKit
from clusterplane.agent.kubernetes.section import KubernetesSection

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class Network:
    def __init__(self, kit: HostKit, record: Record):
        self.kit = kit
        self.record = record

    def prepare(self, section: KubernetesSection, *, forward: bool) -> None:
        wanted = {"net.ipv4.conf.all.route_localnet": "1"}
        if forward:
            wanted["net.ipv4.ip_forward"] = "1"
        saved = self.record.mapping("sysctls")
        changes = {}
        for name, value in wanted.items():
            current = self.kit.sysctl(name)
            if current != value:
                saved.setdefault(name, current)
                changes[name] = value
        self.record.save()
        self.kit.set_sysctls(changes)
        self._sync_routes(section)

    def _sync_routes(self, section: KubernetesSection) -> None:
        device = self._device(section.address)
        wanted = [
            [cidr, via, device]
            for cidr, via in sorted(section.pod_routes.items())
            if cidr != section.pod_cidr and via != section.address
        ]
        routes = self.record.list("routes")
        for route in [r for r in routes if r not in wanted]:
            self._route("del", route)
            routes.remove(route)
            self.record.save()
        for route in [r for r in wanted if r not in routes]:
            self._route("replace", route)
            routes.append(route)
            self.record.save()

    def _route(self, verb: str, route: list[str]) -> None:
        cidr, via, device = route
        table = "local" if ipaddress.IPv4Network(cidr).subnet_of(LOOPBACK) else "main"
        argv = ["ip", "route", verb, cidr, "via", via, "dev", device, "table", table]
        if verb == "del":
            self.kit.host.run(argv, timeout=10)
        else:
            self.kit.command(argv, f"route {cidr} via {via}")

    def _device(self, address: str) -> str:
        listing = self.kit.command(["ip", "-o", "-4", "addr", "show"], "list addresses")
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[3].split("/")[0] == address:
                return fields[1].split("@")[0]
        raise HostError(f"no interface of this host has the address {address}")

    def restore(self) -> None:
        for route in self.record.list("routes"):
            self._route("del", route)
        self.record.data["routes"] = []
        self.kit.set_sysctls(dict(self.record.mapping("sysctls")))
        self.record.data["sysctls"] = {}
        self.record.save()
