"""Message classes for parts of ``onnx.ModelProto``, built at run time from field layouts.

The serving image has onnxruntime but not the ``onnx`` package, and must not need it: checks
that read a model's graph before onnxruntime sees it (``class_order``, ``artifact_safety``)
describe just the fields they read, with their ONNX field numbers, and parse the bytes with the
protobuf runtime gRPC already brings. Unknown fields are skipped by protobuf, so a subset reads
any valid model.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FieldSpec = tuple[str, int, int, int, str]
"""(name, ONNX field number, label, type, message type name or "")."""

OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
KINDS = descriptor_pb2.FieldDescriptorProto
"""``KINDS.TYPE_MESSAGE``, ``KINDS.TYPE_STRING``, ... for the layouts."""


def message_class(package: str, layout: dict[str, list[FieldSpec]], root: str) -> Any:
    """The class of message ``root`` in a proto2 file ``package`` made of ``layout``'s messages
    (each its fields); message-typed fields name another message of the layout."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{package}.proto", package=package, syntax="proto2"
    )
    for name, fields in layout.items():
        described = proto.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            described.field.add(
                name=field_name,
                number=number,
                label=label,
                type=kind,
                type_name=f".{package}.{type_name}" if type_name else None,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{root}"))
