"""google.rpc.Status and the details chatmesh sends (ErrorInfo, BadRequest), enough of them to
read a refusal: the tests need no googleapis package (its google.api modules would shadow the
generated ones)."""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_RPC_PROTO = """
name: "chatmesh_test/rpc.proto" package: "chatmesh_test.rpc" syntax: "proto3"
message_type { name: "Any"
  field { name: "type_url" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "value" number: 2 type: TYPE_BYTES label: LABEL_OPTIONAL } }
message_type { name: "Status"
  field { name: "code" number: 1 type: TYPE_INT32 label: LABEL_OPTIONAL }
  field { name: "message" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "details" number: 3 type: TYPE_MESSAGE type_name: ".chatmesh_test.rpc.Any"
          label: LABEL_REPEATED } }
message_type { name: "FieldViolation"
  field { name: "field" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "description" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL } }
message_type { name: "BadRequest"
  field { name: "field_violations" number: 1 type: TYPE_MESSAGE
          type_name: ".chatmesh_test.rpc.FieldViolation" label: LABEL_REPEATED } }
message_type { name: "ErrorInfo"
  field { name: "reason" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "domain" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "metadata" number: 3 type: TYPE_MESSAGE
          type_name: ".chatmesh_test.rpc.ErrorInfo.MetadataEntry" label: LABEL_REPEATED }
  nested_type { name: "MetadataEntry"
    field { name: "key" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
    field { name: "value" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL }
    options { map_entry: true } } }
"""


def _rpc_classes() -> dict:
    file = text_format.Parse(_RPC_PROTO, descriptor_pb2.FileDescriptorProto())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{m.name}"))
        for m in file.message_type
    }


# Message classes by name: Any, Status, FieldViolation, BadRequest, ErrorInfo.
RPC = _rpc_classes()
