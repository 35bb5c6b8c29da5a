"""The OpenAPI 3.1 document of the HTTP API, derived from the route table and the proto descriptors.

Nothing here repeats the contract: every schema is read from the ``albatross.v1`` descriptors in
their proto3 JSON form (lowerCamelCase names, enums as their names, 64-bit integers as strings or
numbers, ``Struct`` as any JSON object), so a field added to a message appears here, and on the
docs and search pages that read this document, without a change to this module.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from searcher.http.routes import API_ROUTES, JSON, NDJSON, Route

SCHEMA_REF = "#/components/schemas/"
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    **dict.fromkeys(
        (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32),
        {"type": "integer", "format": "int32"},
    ),
    **dict.fromkeys(
        (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32), {"type": "integer", "format": "uint32"}
    ),
    **dict.fromkeys(
        (
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_SFIXED64,
            FieldDescriptor.TYPE_UINT64,
            FieldDescriptor.TYPE_FIXED64,
        ),
        {"type": ["string", "integer"], "format": "int64"},
    ),
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "the HTTP status"},
                "status": {"type": "string", "description": "the gRPC status code name"},
                "message": {"type": "string", "description": "what was wrong, naming the field"},
                "field": {"type": "string", "description": "the offending field, when one is"},
            },
            "required": ["code", "status", "message"],
        }
    },
}


def field_schema(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one field's value; message types are added to ``schemas`` by reference."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        schema: dict[str, Any] = {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        schema = message_ref(field.message_type, schemas)
    else:
        schema = dict(_SCALARS[field.type])
    if field.is_repeated:
        return {"type": "array", "items": schema}
    return schema


def message_ref(descriptor: Descriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    """``{"$ref": ...}`` to ``descriptor``'s schema, added to ``schemas`` (with what it refers to)."""
    if descriptor.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[descriptor.full_name])
    if descriptor.full_name not in schemas:
        schemas[descriptor.full_name] = {}  # placed first: a message may refer to itself
        schemas[descriptor.full_name] = _message_schema(descriptor, schemas)
    return {"$ref": SCHEMA_REF + descriptor.full_name}


def _message_schema(descriptor: Descriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.json_name: field_schema(f, schemas) for f in descriptor.fields},
        "additionalProperties": False,
    }
    oneofs = [o for o in descriptor.oneofs if not o.name.startswith("_")]  # "_x": proto3 optional
    if oneofs:
        schema["description"] = "; ".join(
            f"at most one of {', '.join(f.json_name for f in oneof.fields)}" for oneof in oneofs
        )
    return schema


def _parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    if route.path_field is not None:
        parameters.append({"name": "name", "in": "path", "required": True, "schema": {"type": "string"}})
    if route.body is None:
        descriptor = route.request.DESCRIPTOR
        for field in descriptor.fields:
            if field.name == route.path_field:
                continue
            parameter = {"name": field.json_name, "in": "query", "schema": field_schema(field, schemas)}
            if field.is_repeated:
                parameter["explode"] = True
            parameters.append(parameter)
    return parameters


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation,
        "summary": route.summary,
        "parameters": _parameters(route, schemas),
        "responses": {
            str(route.status): {
                "description": "the "
                + route.response.DESCRIPTOR.name
                + (", one per line" if route.answer == NDJSON else ""),
                "content": {route.answer: {"schema": message_ref(route.response.DESCRIPTOR, schemas)}},
            },
            "default": {
                "description": "an error",
                "content": {JSON: {"schema": {"$ref": SCHEMA_REF + "Error"}}},
            },
        },
    }
    if route.body is not None:
        what = "one per line" if route.body == NDJSON else "fields from the path may be left out"
        operation["requestBody"] = {
            "required": route.body == NDJSON,
            "description": f"the {route.request.DESCRIPTOR.name} ({what})",
            "content": {route.body: {"schema": message_ref(route.request.DESCRIPTOR, schemas)}},
        }
    return operation


def _service_paths() -> dict[str, Any]:
    def plain(summary: str, content: str) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "security": [],
                "responses": {"200": {"description": summary, "content": {content: {}}}},
            }
        }

    return {
        "/healthz": plain("Liveness: the process answers", JSON),
        "/readyz": plain("Readiness: 200 while serving, 503 while starting or draining", JSON),
    }


def document(version: str, *, metrics: bool, token: bool) -> dict[str, Any]:
    """The OpenAPI document of this server (``/metrics`` only when metrics are on)."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for route in API_ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    paths.update(_service_paths())
    if metrics:
        paths["/metrics"] = {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": {"description": "text"}},
            }
        }
    components: dict[str, Any] = {"schemas": schemas}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Albatross",
            "version": version,
            "description": "Semantic search over HTTP/JSON: the albatross.v1 gRPC API in its proto3 JSON "
            "form. Errors carry the gRPC status name and a message naming the field.",
        },
        "paths": paths,
        "components": components,
    }
    if token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
