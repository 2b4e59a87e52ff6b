"""lo127: the CNI plugin (spec 0.4.0) giving a worker's pods addresses in its 127.x subnet.

containerd runs this file as a CNI plugin (`python3 -I cni.py`, through the
wrapper the runtime writes into its CNI bin directory); it imports the standard library
only. Standard plugins cannot do 127.x pod networks: in every network namespace the
kernel's `local 127.0.0.0/8` route (table local) swallows 127.x traffic, and 127.x
addresses get host scope, so routes through a gateway would pick source 0.0.0.0. Per pod
it makes a veth pair onto the host's pod bridge (made on first use), sets route_localnet
on both ends, adds `<subnet> dev eth0 src <ip> table local` and, for every other range the
pod reaches (hosts, other workers' pods, Services), `via <gateway> src <ip> table local`.
IPAM is one file per address in `dataDir`, under a lock.

netconf: {"cniVersion": "0.4.0", "name": "lo127", "type": "lo127", "bridge": "cppods0",
          "subnet": "127.2.1.0/24", "gateway": "127.2.1.1", "dataDir": "/path/ipam",
          "routes": ["127.1.0.0/24"]}
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

VERSIONS = ["0.3.0", "0.3.1", "0.4.0"]


class CniError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode:
        raise CniError(999, f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def host_veth(container_id: str) -> str:
    return "l127" + hashlib.sha1(container_id.encode()).hexdigest()[:11]


def add(conf: dict[str, Any], container_id: str, netns: str, ifname: str) -> dict[str, Any]:
    net = ipaddress.IPv4Network(conf["subnet"])
    gateway, bridge = conf["gateway"], conf["bridge"]
    ensure_bridge(bridge, gateway, net)
    address = allocate(Path(conf["dataDir"]), net, gateway, container_id)
    veth = host_veth(container_id)
    peer = "t" + veth[1:]
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    sh("ip", "link", "set", peer, "netns", netns)
    sh("ip", "link", "set", veth, "master", bridge, "up")
    Path(f"/proc/sys/net/ipv4/conf/{veth}/route_localnet").write_text("1")
    inside = ("nsenter", f"--net={netns}")
    sh(*inside, "ip", "link", "set", peer, "name", ifname)
    sh(*inside, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
       f"net.ipv4.conf.{ifname}.route_localnet=1")  # fmt: skip
    sh(*inside, "ip", "addr", "add", f"{address}/{net.prefixlen}", "dev", ifname)
    sh(*inside, "ip", "link", "set", ifname, "up")
    sh(*inside, "ip", "link", "set", "lo", "up")
    sh(*inside, "ip", "route", "add", str(net), "dev", ifname, "src", address, "table", "local")
    for destination in conf.get("routes", []):
        sh(*inside, "ip", "route", "add", destination, "via", gateway, "dev", ifname,
           "src", address, "table", "local")  # fmt: skip
    # Not /sys/class/net: the host's /sys may show another network namespace's devices.
    mac = json.loads(sh("ip", "-j", "link", "show", veth).stdout)[0].get("address", "")
    return {
        "cniVersion": conf.get("cniVersion", "0.4.0"),
        "interfaces": [{"name": veth, "mac": mac}, {"name": ifname, "sandbox": netns}],
        "ips": [
            {
                "version": "4",
                "address": f"{address}/{net.prefixlen}",
                "gateway": gateway,
                "interface": 1,
            }
        ],
        "dns": {},
    }


def ensure_bridge(bridge: str, gateway: str, net: ipaddress.IPv4Network) -> None:
    if not sh("ip", "link", "show", bridge, check=False).returncode:
        return
    sh("ip", "link", "add", bridge, "type", "bridge")
    sh("ip", "addr", "add", f"{gateway}/{net.prefixlen}", "dev", bridge)
    Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").write_text("1")
    sh("ip", "link", "set", bridge, "up")
    sh("ip", "route", "replace", str(net), "dev", bridge, "src", gateway, "table", "local")


def allocate(data: Path, net: ipaddress.IPv4Network, gateway: str, container_id: str) -> str:
    for host in net.hosts():
        path = data / str(host)
        if str(host) == gateway:
            continue
        try:
            with path.open("x") as claim:
                claim.write(container_id)
        except FileExistsError:
            continue
        return str(host)
    raise CniError(11, "lo127: the pod subnet is exhausted")


def delete(conf: dict[str, Any], container_id: str) -> dict[str, Any]:
    data = Path(conf["dataDir"])
    for claim in data.iterdir():
        if not claim.name.startswith(".") and claim.read_text().strip() == container_id:
            claim.unlink()
    sh("ip", "link", "del", host_veth(container_id), check=False)
    return {}


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        print(json.dumps({"cniVersion": "0.4.0", "supportedVersions": VERSIONS}))
        return 0
    conf = json.load(sys.stdin)
    container_id = os.environ["CNI_CONTAINERID"]
    data = Path(conf["dataDir"])
    data.mkdir(parents=True, exist_ok=True)
    with (data / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if command == "ADD":
            netns, ifname = os.environ["CNI_NETNS"], os.environ.get("CNI_IFNAME", "eth0")
            result = add(conf, container_id, netns, ifname)
        elif command == "DEL":
            result = delete(conf, container_id)
        elif command == "CHECK":
            return 0
        else:
            raise CniError(4, f"lo127: unsupported command {command!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CniError as exc:
        print(json.dumps({"cniVersion": "0.4.0", "code": exc.code, "msg": str(exc)}))
        sys.exit(1)
    except Exception as exc:  # every failure is a CNI error object on stdout
        print(json.dumps({"cniVersion": "0.4.0", "code": 999, "msg": f"lo127: {exc}"}))
        sys.exit(1)
