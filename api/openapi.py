"""The OpenAPI 3.1 document, generated from the route definitions and their pydantic models.

Nothing here is written by hand per route: parameters come from each endpoint's parameter
model (path or query by the path template), bodies and replies from its models, error
replies from its scope and path. Component schemas are pydantic's JSON Schema (2020-12,
which OpenAPI 3.1 uses as is).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from api.routing import Endpoint, path_parameters

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``null`` branch of an optional parameter: absent is how it is left out."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    rest = [o for o in options if o.get("type") != "null"]
    if len(rest) != 1:
        return schema
    merged = {k: v for k, v in schema.items() if k != "anyOf"} | rest[0]
    if merged.get("default", 0) is None:
        del merged["default"]
    result: dict[str, Any] = merged
    return result


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    schema = endpoint.params.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    in_path = path_parameters(endpoint.path)
    params = []
    for name, field_schema in schema.get("properties", {}).items():
        prop = _without_null(dict(field_schema))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "path" if name in in_path else "query",
            "required": name in in_path or name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def openapi_document(
    endpoints: Iterable[Endpoint], *, title: str, version: str, description: str = ""
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of ``endpoints``."""
    endpoints = list(endpoints)
    inputs: list[tuple[tuple[str, int | str], JsonSchemaMode, TypeAdapter[Any]]] = []
    for endpoint in endpoints:
        if endpoint.body is not None:
            inputs.append(((endpoint.name, "body"), "validation", TypeAdapter(endpoint.body)))
        inputs.extend(
            ((endpoint.name, reply.status), "serialization", TypeAdapter(reply.schema))
            for reply in endpoint.replies
            if reply.schema is not None and not isinstance(reply.schema, dict)
        )
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "operationId": endpoint.name,
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "parameters": _parameters(endpoint),
            "security": [] if endpoint.scope is None else [{"bearer": [endpoint.scope]}],
            "responses": {},
        }
        if endpoint.scope is not None:
            operation["description"] = f"Needs an API key with scope `{endpoint.scope}`" + (
                "." if endpoint.scope == "admin" else " or `admin`."
            )
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas[((endpoint.name, "body"), "validation")]}
                },
            }
        for reply in endpoint.replies:
            response: dict[str, Any] = {"description": reply.description}
            if reply.media_types:
                schema = (
                    reply.schema
                    if isinstance(reply.schema, dict)
                    else schemas.get(((endpoint.name, reply.status), "serialization"), {})
                )
                response["content"] = {media: {"schema": schema} for media in reply.media_types}
            if reply.status in (429, 503):
                response["headers"] = {
                    "Retry-After": {
                        "description": "seconds to wait",
                        "schema": {"type": "integer"},
                    }
                }
            operation["responses"][str(reply.status)] = response
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (scope read or admin)",
                }
            },
        },
    }
