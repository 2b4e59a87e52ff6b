"""The GPU device plugin the agent serves to its host's kubelet (device-plugin API v1beta1).

`DevicePlugin(directory, resource, gpus, reach)` serves gRPC on a unix socket in the
kubelet's device-plugin directory (`directory`, as this process reaches it) and registers
`resource` (nvidia.com/gpu) with the kubelet there. It advertises one device per GPU,
Healthy while its device file exists (`reach` maps a host path to where this process finds
it), and on Allocate hands each container its GPUs' device nodes (`/dev/<name>`, rw) and
`NVIDIA_VISIBLE_DEVICES`. A watcher thread keeps it registered: the kubelet empties the
directory when it restarts, so a vanished socket is served again and registered anew.
`stop()` ends the streams, the server and the thread and removes the socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf.message import Message

from clusterplane.agent.kubernetes import deviceapi as api
from clusterplane.agent.kubernetes.section import Gpu

SOCKET = "clusterplane-gpu.sock"
KUBELET_SOCKET = "kubelet.sock"
POLL_SECONDS = 0.5
REGISTER_TIMEOUT = 10.0

log = logging.getLogger(__name__)


class DevicePlugin:
    def __init__(
        self,
        directory: Path,
        resource: str,
        gpus: tuple[Gpu, ...],
        reach: Callable[[str], Path],
    ):
        self.directory = directory
        self.resource = resource
        self.gpus = gpus
        self.reach = reach
        self.registrations = 0  # how often it registered (a kubelet restart adds one)
        self._server: grpc.Server | None = None
        self._kubelet: tuple[int, int] | None = None  # the kubelet socket it registered at
        self._health: dict[str, bool] = {}
        self._changed = threading.Condition()
        self._version = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def socket(self) -> Path:
        return self.directory / SOCKET

    @property
    def registered(self) -> bool:
        return self._kubelet is not None and self._kubelet == _identity(self.kubelet_socket)

    @property
    def kubelet_socket(self) -> Path:
        return self.directory / KUBELET_SOCKET

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._watch, name=f"device-plugin {self.directory}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._stop_server()

    # -- the watcher -----------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:  # keep watching: the next step tries again
                log.exception("device plugin for %s", self.directory)
            self._stopping.wait(POLL_SECONDS)

    def _step(self) -> None:
        health = {gpu.id: self.reach(gpu.device).exists() for gpu in self.gpus}
        if health != self._health:
            self._health = health
            self._notify()
        if self._server is None or not self.socket.exists():
            self._stop_server()
            self._serve()
        if not self.registered and self.kubelet_socket.exists():
            self._register()

    def _serve(self) -> None:
        self.socket.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((self._handlers(),))
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server
        self._kubelet = None

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None
        self._kubelet = None
        with contextlib.suppress(OSError):
            self.socket.unlink()

    def _register(self) -> None:
        kubelet = _identity(self.kubelet_socket)
        request = api.message(
            "RegisterRequest",
            version=api.VERSION,
            endpoint=SOCKET,
            resource_name=self.resource,
            options=api.message("DevicePluginOptions"),
        )
        with grpc.insecure_channel(f"unix://{self.kubelet_socket}") as channel:
            register = channel.unary_unary(
                f"/{api.REGISTRATION}/Register",
                request_serializer=_serialize,
                response_deserializer=api.message_class("Empty").FromString,
            )
            try:
                register(request, timeout=REGISTER_TIMEOUT)
            except grpc.RpcError as exc:
                log.info("device plugin: the kubelet refused registration: %s", exc)
                return
        self._kubelet = kubelet
        self.registrations += 1

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    # -- the API ---------------------------------------------------------------------
    def _handlers(self) -> grpc.GenericRpcHandler:
        def unary(
            function: Callable[[Message], Message], request: str
        ) -> grpc.RpcMethodHandler[Message, Message]:
            return grpc.unary_unary_rpc_method_handler(
                lambda message, _context: function(message),
                request_deserializer=api.message_class(request).FromString,
                response_serializer=_serialize,
            )

        return grpc.method_handlers_generic_handler(
            api.SERVICE,
            {
                "GetDevicePluginOptions": unary(
                    lambda _: api.message("DevicePluginOptions"), "Empty"
                ),
                "ListAndWatch": grpc.unary_stream_rpc_method_handler(
                    self._list_and_watch,
                    request_deserializer=api.message_class("Empty").FromString,
                    response_serializer=_serialize,
                ),
                "GetPreferredAllocation": unary(
                    lambda _: api.message("PreferredAllocationResponse"),
                    "PreferredAllocationRequest",
                ),
                "Allocate": unary(self._allocate, "AllocateRequest"),
                "PreStartContainer": unary(
                    lambda _: api.message("PreStartContainerResponse"), "PreStartContainerRequest"
                ),
            },
        )

    def _devices(self) -> Message:
        devices = [
            api.message(
                "Device", ID=gpu.id, health="Healthy" if self._health.get(gpu.id) else "Unhealthy"
            )
            for gpu in self.gpus
        ]
        return api.message("ListAndWatchResponse", devices=devices)

    def _list_and_watch(
        self, _request: Message, context: grpc.ServicerContext
    ) -> Iterator[Message]:
        seen = -1
        while context.is_active() and not self._stopping.is_set():
            with self._changed:
                if seen == self._version:
                    self._changed.wait(timeout=1.0)
                if seen == self._version:
                    continue
                seen = self._version
            yield self._devices()

    def _allocate(self, request: Message) -> Message:
        by_id = {gpu.id: gpu for gpu in self.gpus}
        responses = []
        for container in request.container_requests:  # type: ignore[attr-defined]
            gpus = [by_id[device] for device in container.devicesIDs if device in by_id]
            devices = [
                api.message(
                    "DeviceSpec",
                    container_path=f"/dev/{os.path.basename(gpu.device)}",
                    host_path=gpu.device,
                    permissions="rw",
                )
                for gpu in gpus
            ]
            envs = {"NVIDIA_VISIBLE_DEVICES": ",".join(gpu.id for gpu in gpus)}
            responses.append(api.message("ContainerAllocateResponse", envs=envs, devices=devices))
        return api.message("AllocateResponse", container_responses=responses)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _identity(path: Path) -> tuple[int, int] | None:
    """The socket file's (device, inode): a kubelet that restarted made a new one."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)
