"""A Kubernetes worker on this host: containerd, the kubelet and the GPU device plugin.

`Worker(host, layout, record).converge(section, messages)` writes the node's files (its
own client pair from the assignment's secrets: CN `system:node:NAME`), prepares the host
(the kubelet's hard-coded paths bind-mounted from the base directory, the node's cgroup
root in every hierarchy, the pod network's sysctls and routes to the other workers' pods,
the machine-wide sysctls the kubelet rewrites recorded first), runs containerd, imports
the section's images, runs the kubelet with cloud metadata look-ups disabled, and serves
the device plugin for the section's GPUs. It returns the phase: "ready" once the daemons
run and the GPUs are registered, else "starting"; `daemon_health` is then what the
kubelet's health probe says (`probe`). `teardown()` undoes all of it, in the
reverse order: device plugin, kubelet, every container and sandbox, containerd and its
shims, the pods' network namespaces and bridge, mounts, cgroups, routes, sysctls.
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from clusterplane.agent.kubernetes import cni, config, processes
from clusterplane.agent.kubernetes.daemons import Daemons, Record
from clusterplane.agent.kubernetes.devices import DevicePlugin
from clusterplane.agent.kubernetes.host import MACHINE_RECORD, HostError, HostKit, MachineShare
from clusterplane.agent.kubernetes.network import Network
from clusterplane.agent.kubernetes.pki import KeyPair, kubeconfig
from clusterplane.agent.kubernetes.probe import KubeletProbe
from clusterplane.agent.kubernetes.section import KubernetesSection
from clusterplane.agent.slurm.host import SlurmHost as Host

CONTAINERD_START_TIMEOUT = 20.0
CNI_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_RESULTS = "/var/lib/cni/results"
POD_NETNS = re.compile(r"/var/run/netns/(cni-[0-9a-f-]+)")
# The kubelet's ECR credential provider probes the cloud metadata address at start-up
# through the AWS SDK unless this is set.
KUBELET_ENV = {"AWS_EC2_METADATA_DISABLED": "true"}


class Worker:
    def __init__(
        self,
        host: Host,
        layout: config.Layout,
        record: Record,
        programs: dict[str, str],
        machine_record: str = MACHINE_RECORD,
    ):
        self.host = host
        self.machine_record = machine_record
        self.kit = HostKit(host)
        self.layout = layout
        self.record = record
        self.programs = programs
        self.daemons = Daemons(host, record, layout.log)
        self.network = Network(self.kit, record)
        self.probe = KubeletProbe()
        self.daemon_health: dict[str, Any] | None = None
        self.plugin: DevicePlugin | None = None

    # -- converge --------------------------------------------------------------------
    def converge(self, section: KubernetesSection, messages: list[str]) -> str:
        for gpu in section.gpus:
            if not self.host.path(gpu.device).is_char_device():
                raise HostError(f"GPU device {gpu.device} is missing or not a device file")
        changed = self._write_files(section)
        self.network.prepare(section, forward=True)
        share = self.record.data.setdefault("machine_record", self.machine_record)
        holder = self.record.data.setdefault("machine_holder", secrets.token_hex(8))
        MachineShare(self.kit, share).hold(holder, self.record.path)
        self.record.save()
        self._bind_host_paths()
        self._make_cgroups(section)
        if self.daemons.ensure("containerd", self._containerd_argv(), {}):
            messages.append("containerd started")
        self._wait_for_containerd()
        self._import_images(section, messages)
        kubelet = config.kubelet_argv(section, self.layout, self.programs["kubelet"])
        if changed and self.daemons.running("kubelet"):
            self.daemons.stop("kubelet")
        if self.daemons.ensure("kubelet", kubelet, KUBELET_ENV):
            messages.append("kubelet started")
            self.probe.reset()
        registered = self._serve_devices(section)
        running = self.daemons.running("containerd") and self.daemons.running("kubelet")
        self.daemon_health = self.probe.check(section.address, section.node_grace_seconds)
        return "ready" if running and registered else "starting"

    def _write_files(self, section: KubernetesSection) -> bool:
        assert section.node_cert is not None and section.node_key is not None
        layout, kit = self.layout, self.kit
        pair = KeyPair(section.node_cert, section.node_key)
        written = [
            kit.write(layout.cert("ca"), section.ca_cert),
            kit.write(layout.cert("node"), pair.cert_pem),
            kit.write(layout.key("node"), pair.key_pem, 0o600),
            kit.write(
                layout.kubeconfig("kubelet"),
                kubeconfig(section.api_server, section.ca_cert, pair),
                0o600,
            ),
            kit.write(layout.path("etc", "kubelet.json"), config.kubelet_config(section, layout)),
        ]
        cni_bin = layout.path("cni", "bin")
        kit.write(
            layout.path("containerd", "config.toml"),
            config.containerd_config(section, layout, cni_bin),
        )
        kit.write(layout.path("cni", "net.d", "10-lo127.conf"), config.cni_config(section, layout))
        wrapper = f'#!/bin/sh\nexec "{sys.executable}" -I "{cni.__file__}" "$@"\n'
        kit.write(f"{cni_bin}/lo127", wrapper, 0o755)
        loopback = self._loopback_plugin()
        kit.write(f"{cni_bin}/loopback", f'#!/bin/sh\nexec "{loopback}" "$@"\n', 0o755)
        for directory in ("log", "kubelet", "cni/ipam"):
            kit.mkdir(layout.path(directory))
        return any(written)

    def _loopback_plugin(self) -> str:
        for directory in CNI_PLUGIN_DIRS:
            if self.host.path(f"{directory}/loopback").is_file():
                return f"{directory}/loopback"
        raise HostError(f"the CNI loopback plugin is not installed (looked in {CNI_PLUGIN_DIRS})")

    def _containerd_argv(self) -> list[str]:
        return [
            self.programs["containerd"],
            "--config",
            self.layout.path("containerd", "config.toml"),
        ]

    def _bind_host_paths(self) -> None:
        mounted = self.record.list("mounts")
        for source_name, target in config.HOST_PATHS.items():
            if target in mounted:
                continue
            source = self.layout.path(source_name)
            self.kit.mkdir(source)
            self.kit.mkdir(target)  # a machine path: `MachineShare` removes it if it made it
            self.kit.command(["mount", "--bind", source, target], f"bind {target}")
            mounted.append(target)
            self.record.save()

    def _hierarchies(self) -> list[Path]:
        root = self.host.path("/sys/fs/cgroup")
        if (root / "cgroup.controllers").exists():
            return [root]  # the unified hierarchy alone
        return [c for c in sorted(root.iterdir()) if c.is_dir()]  # v1, and a hybrid's v2

    def _make_cgroups(self, section: KubernetesSection) -> None:
        name = config.cgroup_root(section)
        self.record.data.setdefault("cgroup", name)
        for hierarchy in self._hierarchies():
            group = hierarchy / name
            if group.is_dir():
                continue
            group.mkdir()
            for inherited in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / inherited).exists():
                    (group / inherited).write_text((hierarchy / inherited).read_text())
        self.record.save()

    def _wait_for_containerd(self) -> None:
        socket = self.host.path(self.layout.containerd_socket)
        deadline = time.monotonic() + CONTAINERD_START_TIMEOUT
        while not socket.is_socket():
            if time.monotonic() > deadline or not self.daemons.running("containerd"):
                raise HostError(f"containerd did not start; see {self.layout.log}/containerd.log")
            time.sleep(0.1)

    def _ctr(self, *argv: str, what: str, timeout: float = 60) -> str:
        ctr = [self.programs["ctr"], "-a", self.layout.containerd_socket, "-n", "k8s.io"]
        return self.kit.command([*ctr, *argv], what, timeout=timeout)

    def _import_images(self, section: KubernetesSection, messages: list[str]) -> None:
        imported = self.record.mapping("images")
        for image in section.images:
            target = self.host.path(image)
            if not target.is_file():
                raise HostError(f"image {image} does not exist")
            stamp = f"{target.stat().st_size}:{target.stat().st_mtime_ns}"
            if imported.get(image) == stamp:
                continue
            self._ctr("images", "import", image, what=f"import {image}", timeout=300)
            imported[image] = stamp
            self.record.save()
            messages.append(f"imported {Path(image).name}")

    def _serve_devices(self, section: KubernetesSection) -> bool:
        if not section.gpus:
            self._stop_plugin()
            return True
        plugin = self.plugin
        if plugin is not None and (plugin.gpus, plugin.resource) != (
            section.gpus,
            section.gpu_resource,
        ):
            self._stop_plugin()
            plugin = None
        if plugin is None:
            directory = self.host.path(config.HOST_PATHS["device-plugins"])
            plugin = DevicePlugin(directory, section.gpu_resource, section.gpus, self.host.path)
            self.plugin = plugin
        plugin.start()
        deadline = time.monotonic() + 5
        while not plugin.registered and time.monotonic() < deadline:
            time.sleep(0.2)  # a kubelet that just started opens its socket within seconds
        return plugin.registered

    def _stop_plugin(self) -> None:
        if self.plugin is not None:
            self.plugin.stop()
            self.plugin = None

    # -- teardown --------------------------------------------------------------------
    def teardown(self) -> None:
        self._stop_plugin()
        self.daemons.stop("kubelet")
        pod_namespaces, sandboxes = self._stop_containers()
        self.daemons.stop("containerd")
        shims = processes.find(self.host, f"-address {self.layout.containerd_socket}")
        processes.stop(self.host, shims, "containerd shims")
        self._kill_cgroup_members()
        for namespace in pod_namespaces:
            self.host.run(["ip", "netns", "del", namespace], timeout=30)
        self.host.run(["ip", "link", "del", config.POD_BRIDGE], timeout=30)
        for point in self.kit.mounts_under(self.layout.base):
            self.kit.unmount(point)
        for target in reversed(self.record.list("mounts")):
            self.kit.unmount(target)
        self.record.data["mounts"] = []
        self._remove_cni_results(sandboxes)
        self._remove_cgroups()
        self.network.restore()
        holder = self.record.get("machine_holder")
        if holder:
            MachineShare(self.kit, self.record.get("machine_record")).release(holder)

    def _stop_containers(self) -> tuple[list[str], list[str]]:
        """Kill every task of this containerd; the pods' network namespaces, the ids."""
        if not self.daemons.running("containerd"):
            return [], []
        namespaces: set[str] = set()
        containers = self._ctr("containers", "ls", "-q", what="list containers").split()
        for container in containers:
            info = self._ctr("containers", "info", container, what="container info")
            namespaces.update(POD_NETNS.findall(info))
        for task in self._ctr("tasks", "ls", "-q", what="list tasks").split():
            self.host.run(self._ctr_argv("tasks", "kill", "-s", "SIGKILL", task), timeout=30)
        for task in self._ctr("tasks", "ls", "-q", what="list tasks").split():
            self.host.run(self._ctr_argv("tasks", "delete", "-f", task), timeout=30)
        for container in containers:
            self.host.run(self._ctr_argv("containers", "delete", container), timeout=30)
        return sorted(namespaces), containers

    def _remove_cni_results(self, containers: list[str]) -> None:
        """CNI's cached results of the sandboxes (no CNI DEL ran: they were killed)."""
        cache = self.host.path(CNI_RESULTS)
        if not containers or not cache.is_dir():
            return
        for entry in cache.iterdir():
            if any(f"-{container}-" in entry.name for container in containers):
                entry.unlink(missing_ok=True)

    def _ctr_argv(self, *argv: str) -> list[str]:
        return [self.programs["ctr"], "-a", self.layout.containerd_socket, "-n", "k8s.io", *argv]

    def _kill_cgroup_members(self) -> None:
        name = self.record.get("cgroup")
        if not name:
            return
        pids: set[str] = set()
        for hierarchy in self._hierarchies():
            for procs in (hierarchy / name).rglob("cgroup.procs"):
                pids.update(procs.read_text().split())
        members = processes.existing(self.host, sorted(int(pid) for pid in pids))
        processes.stop(self.host, members, "the containers' processes")

    def _remove_cgroups(self) -> None:
        name = self.record.get("cgroup")
        if not name:
            return
        for hierarchy in self._hierarchies():
            group = hierarchy / name
            if not group.is_dir():
                continue
            for directory in sorted(
                (p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                _rmdir(directory)
            _rmdir(group)


def _rmdir(directory: Path) -> None:
    for _ in range(50):  # a cgroup whose last task just died stays busy for a moment
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    raise HostError(f"cgroup {directory} is still in use")
