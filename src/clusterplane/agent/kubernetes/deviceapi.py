"""The kubelet's device-plugin API v1beta1 as protobuf message classes, without codegen.

The messages of k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto (Kubernetes 1.20)
are declared here field by field (name, number, type) and built into classes at import
with protobuf's descriptor pool, so no generated `_pb2` module is shipped. Only the wire
format matters to the kubelet: field numbers and types follow the upstream file.
`message(name)` is a class; `SERVICE` and `REGISTRATION` are the gRPC service names.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PACKAGE = "v1beta1"
SERVICE = f"{PACKAGE}.DevicePlugin"
REGISTRATION = f"{PACKAGE}.Registration"
VERSION = "v1beta1"

_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_BOOL = descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
_INT32 = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
_INT64 = descriptor_pb2.FieldDescriptorProto.TYPE_INT64
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL

# message -> [(field, number, type, repeated, message type or "map")]
_FIELDS: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "Empty": [],
    "DevicePluginOptions": [
        ("pre_start_required", 1, _BOOL, False, ""),
        ("get_preferred_allocation_available", 2, _BOOL, False, ""),
    ],
    "RegisterRequest": [
        ("version", 1, _STRING, False, ""),
        ("endpoint", 2, _STRING, False, ""),
        ("resource_name", 3, _STRING, False, ""),
        ("options", 4, _MESSAGE, False, "DevicePluginOptions"),
    ],
    "ListAndWatchResponse": [("devices", 1, _MESSAGE, True, "Device")],
    "NUMANode": [("ID", 1, _INT64, False, "")],
    "TopologyInfo": [("nodes", 1, _MESSAGE, True, "NUMANode")],
    "Device": [
        ("ID", 1, _STRING, False, ""),
        ("health", 2, _STRING, False, ""),
        ("topology", 3, _MESSAGE, False, "TopologyInfo"),
    ],
    "PreStartContainerRequest": [("devicesIDs", 1, _STRING, True, "")],
    "PreStartContainerResponse": [],
    "ContainerPreferredAllocationRequest": [
        ("available_deviceIDs", 1, _STRING, True, ""),
        ("must_include_deviceIDs", 2, _STRING, True, ""),
        ("allocation_size", 3, _INT32, False, ""),
    ],
    "PreferredAllocationRequest": [
        ("container_requests", 1, _MESSAGE, True, "ContainerPreferredAllocationRequest")
    ],
    "ContainerPreferredAllocationResponse": [("deviceIDs", 1, _STRING, True, "")],
    "PreferredAllocationResponse": [
        ("container_responses", 1, _MESSAGE, True, "ContainerPreferredAllocationResponse")
    ],
    "ContainerAllocateRequest": [("devicesIDs", 1, _STRING, True, "")],
    "AllocateRequest": [("container_requests", 1, _MESSAGE, True, "ContainerAllocateRequest")],
    "Mount": [
        ("container_path", 1, _STRING, False, ""),
        ("host_path", 2, _STRING, False, ""),
        ("read_only", 3, _BOOL, False, ""),
    ],
    "DeviceSpec": [
        ("container_path", 1, _STRING, False, ""),
        ("host_path", 2, _STRING, False, ""),
        ("permissions", 3, _STRING, False, ""),
    ],
    "ContainerAllocateResponse": [
        ("envs", 1, _MESSAGE, True, "map"),
        ("mounts", 2, _MESSAGE, True, "Mount"),
        ("devices", 3, _MESSAGE, True, "DeviceSpec"),
        ("annotations", 4, _MESSAGE, True, "map"),
    ],
    "AllocateResponse": [("container_responses", 1, _MESSAGE, True, "ContainerAllocateResponse")],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="clusterplane/deviceplugin_v1beta1.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _FIELDS.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            entry = message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_REPEATED if repeated else _OPTIONAL,
                json_name=field_name,
            )
            if type_name == "map":
                entry_name = "".join(p.capitalize() for p in field_name.split("_")) + "Entry"
                _map_entry(message.nested_type.add(name=entry_name))
                entry.type_name = f".{PACKAGE}.{name}.{entry_name}"
            elif type_name:
                entry.type_name = f".{PACKAGE}.{type_name}"
    return proto


def _map_entry(entry: descriptor_pb2.DescriptorProto) -> None:
    entry.options.map_entry = True
    for field_name, number in (("key", 1), ("value", 2)):
        entry.field.add(name=field_name, number=number, type=_STRING, label=_OPTIONAL)


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
_CLASSES: dict[str, type[Message]] = {
    name: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
    for name in _FIELDS
}


def message(name: str, **fields: Any) -> Message:
    """A new message of type `name` (a key of the API), with `fields` set."""
    return _CLASSES[name](**fields)


def message_class(name: str) -> type[Message]:
    return _CLASSES[name]
