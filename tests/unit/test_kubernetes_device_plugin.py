"""The agent's GPU device plugin against a stand-in kubelet speaking the v1beta1 API.

The stand-in serves `Registration` on `kubelet.sock` in a temporary device-plugin
directory and calls the plugin back over its socket as the kubelet does.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from clusterplane.agent.kubernetes import deviceapi as api
from clusterplane.agent.kubernetes.devices import SOCKET, DevicePlugin
from clusterplane.agent.kubernetes.section import Gpu


class StandInKubelet:
    def __init__(self, directory: Path):
        self.directory = directory
        self.requests: list[Message] = []
        self.server: grpc.Server | None = None

    def start(self) -> None:
        def register(request: Message, _context: Any) -> Message:
            self.requests.append(request)
            return api.message("Empty")

        handler = grpc.method_handlers_generic_handler(
            api.REGISTRATION,
            {
                "Register": grpc.unary_unary_rpc_method_handler(
                    register,
                    request_deserializer=api.message_class("RegisterRequest").FromString,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"unix://{self.directory}/kubelet.sock")
        self.server.start()

    def restart(self) -> None:
        """What a restarted kubelet does: empty the directory, serve a new socket."""
        self.stop()
        for entry in self.directory.iterdir():
            entry.unlink()
        self.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)

    def call(self, method: str, request: Message, response: str) -> Any:
        with grpc.insecure_channel(f"unix://{self.directory}/{SOCKET}") as channel:
            stub = channel.unary_unary(
                f"/{api.SERVICE}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=api.message_class(response).FromString,
            )
            return stub(request, timeout=5)

    def first_device_list(self) -> Any:
        with grpc.insecure_channel(f"unix://{self.directory}/{SOCKET}") as channel:
            stream = channel.unary_stream(
                f"/{api.SERVICE}/ListAndWatch",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=api.message_class("ListAndWatchResponse").FromString,
            )
            responses = stream(api.message("Empty"), timeout=5)
            first = next(responses)
            responses.cancel()
            return first


def wait_for(probe: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def devices(tmp_path: Path) -> tuple[Gpu, ...]:
    gpus = []
    for index in range(3):
        device = tmp_path / f"nvidia{index}"
        device.touch()
        gpus.append(Gpu(f"GPU-{index}", str(device)))
    return tuple(gpus)


@pytest.fixture
def kubelet() -> Iterator[StandInKubelet]:
    """In a short directory of its own: a unix socket's path has at most 107 bytes, and
    pytest's temporary paths grow with the test's name and the run's number."""
    with tempfile.TemporaryDirectory(prefix="dp-", dir="/tmp") as short:
        directory = Path(short) / "device-plugins"
        directory.mkdir()
        standin = StandInKubelet(directory)
        standin.start()
        yield standin
        standin.stop()


@pytest.fixture
def plugin(kubelet: StandInKubelet, devices: tuple[Gpu, ...]) -> Iterator[DevicePlugin]:
    plugin = DevicePlugin(kubelet.directory, "nvidia.com/gpu", devices, Path)
    plugin.start()
    yield plugin
    plugin.stop()


def test_the_plugin_registers_its_resource_and_lists_healthy_devices(
    kubelet: StandInKubelet, plugin: DevicePlugin
) -> None:
    wait_for(lambda: plugin.registered, "registration")

    request = kubelet.requests[0]
    assert (request.version, request.endpoint, request.resource_name) == (  # type: ignore[attr-defined]
        "v1beta1",
        SOCKET,
        "nvidia.com/gpu",
    )
    listed = kubelet.first_device_list()
    assert [(d.ID, d.health) for d in listed.devices] == [
        ("GPU-0", "Healthy"),
        ("GPU-1", "Healthy"),
        ("GPU-2", "Healthy"),
    ]


def test_a_container_gets_its_device_nodes_and_visible_devices(
    kubelet: StandInKubelet, plugin: DevicePlugin, devices: tuple[Gpu, ...]
) -> None:
    wait_for(lambda: plugin.registered, "registration")
    request = api.message(
        "AllocateRequest",
        container_requests=[api.message("ContainerAllocateRequest", devicesIDs=["GPU-2", "GPU-0"])],
    )

    response = kubelet.call("Allocate", request, "AllocateResponse")

    container = response.container_responses[0]
    assert dict(container.envs) == {"NVIDIA_VISIBLE_DEVICES": "GPU-2,GPU-0"}
    assert [(d.container_path, d.host_path, d.permissions) for d in container.devices] == [
        ("/dev/nvidia2", devices[2].device, "rw"),
        ("/dev/nvidia0", devices[0].device, "rw"),
    ]


def test_a_gpu_whose_device_file_vanished_is_listed_unhealthy(
    kubelet: StandInKubelet, plugin: DevicePlugin, devices: tuple[Gpu, ...]
) -> None:
    wait_for(lambda: plugin.registered, "registration")
    os.unlink(devices[1].device)

    def unhealthy() -> bool:
        listed = kubelet.first_device_list()
        return [d.health for d in listed.devices] == ["Healthy", "Unhealthy", "Healthy"]

    wait_for(unhealthy, "GPU-1 unhealthy")


def test_after_a_kubelet_restart_the_plugin_serves_again_and_registers_again(
    kubelet: StandInKubelet, plugin: DevicePlugin
) -> None:
    wait_for(lambda: plugin.registered, "registration")

    kubelet.restart()

    wait_for(lambda: len(kubelet.requests) == 2, "a second registration")
    # The kubelet records a request before its answer reaches the plugin.
    wait_for(lambda: plugin.registrations == 2, "the plugin counting it")
    assert stat.S_ISSOCK((kubelet.directory / SOCKET).stat().st_mode)
    assert len(kubelet.first_device_list().devices) == 3


def test_stopping_the_plugin_removes_its_socket_and_thread(
    kubelet: StandInKubelet, devices: tuple[Gpu, ...]
) -> None:
    plugin = DevicePlugin(kubelet.directory, "nvidia.com/gpu", devices, Path)
    plugin.start()
    wait_for(lambda: plugin.registered, "registration")

    plugin.stop()

    assert not (kubelet.directory / SOCKET).exists()
    assert not any(t.name.startswith("device-plugin") for t in threading.enumerate())
