"""Route definitions that carry their contract: scope, parameter, body and reply models.

A handler declared here receives its parameters (and body) already validated and returns
a pydantic model, which is serialized with the declared reply type. The OpenAPI document
(``api.openapi``) is generated from the same :class:`Endpoint` records, so the two cannot
drift apart. Fields of a parameter model named in the path template (``{device_id}``)
are path parameters, the others query parameters; a list field is a query parameter that
may be repeated. The caller's :class:`~api.auth.Principal` is on the request
(``request[PRINCIPAL]``) for handlers that record who did what.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_origin

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.auth import Principal, Scope
from api.context import DATABASE, KEYS
from api.errors import BadRequestError
from api.models import ErrorBody, NoParams

__all__ = [
    "PRINCIPAL",
    "Endpoint",
    "RawJson",
    "Reply",
    "Router",
    "path_parameters",
    "validation_message",
]

#: Who is calling (an endpoint with a scope only).
PRINCIPAL = web.RequestKey("principal", Principal)

P = TypeVar("P", bound=BaseModel)
B = TypeVar("B", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RawJson:
    """A JSON answer already encoded (by PostgreSQL), in the shape of the declared reply.

    For the few endpoints whose answers are too large to build as models in time; a test
    holds each of them to the reply model, since the OpenAPI document describes that.
    """

    body: bytes


JsonHandler = Callable[[web.Request, P], Awaitable[BaseModel | RawJson]]
BodyHandler = Callable[[web.Request, P, B], Awaitable[BaseModel]]
StreamHandler = Callable[[web.Request, P], Awaitable[web.StreamResponse]]

_PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Reply:
    """One documented response: a JSON body of type ``schema``, or raw ``media_types``."""

    status: int
    description: str
    schema: Any = None
    media_types: tuple[str, ...] = ("application/json",)


@dataclass(frozen=True)
class Endpoint:
    """A route and its contract."""

    method: str
    path: str
    name: str
    summary: str
    tag: str
    scope: Scope | None
    params: type[BaseModel]
    body: type[BaseModel] | None
    replies: tuple[Reply, ...]
    handler: Handler


def path_parameters(path: str) -> set[str]:
    """Return the names of the parameters in a path template."""
    return set(_PATH_PARAM.findall(path))


def validation_message(exc: ValidationError) -> str:
    """Return a pydantic error as one sentence naming each bad field."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown parameter"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _repeatable(model: type[BaseModel]) -> set[str]:
    """Return the names of the list fields of ``model``: query parameters given repeatedly."""
    return {
        name for name, field in model.model_fields.items() if get_origin(field.annotation) is list
    }


def _parse_params(request: web.Request, model: type[P]) -> P:
    given: dict[str, str | list[str]] = dict(request.match_info)
    repeatable = _repeatable(model)
    for name in request.query:
        values = request.query.getall(name)
        if name in repeatable:
            given[name] = values
            continue
        if len(values) > 1:
            raise BadRequestError(f"{name}: give it once (use commas for several values)")
        given[name] = values[0]
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise BadRequestError(validation_message(exc)) from exc


async def _parse_body(request: web.Request, model: type[B]) -> B:
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise BadRequestError(validation_message(exc)) from exc


def _error_replies(path: str, scope: Scope | None, extra: Sequence[Reply]) -> tuple[Reply, ...]:
    replies = [Reply(400, "invalid parameters or body", ErrorBody)]
    if scope is not None:
        replies.append(Reply(401, "no API key, or an unknown one", ErrorBody))
        if scope == "admin":
            replies.append(Reply(403, "the key lacks admin scope", ErrorBody))
        replies.append(Reply(429, "over the key's request rate (see Retry-After)", ErrorBody))
        replies.append(Reply(503, "database unavailable (see Retry-After)", ErrorBody))
    if "device_id" in path_parameters(path):
        replies.append(Reply(404, "no such device", ErrorBody))
    return (*replies, *extra)


class Router:
    """Collects the endpoints declared with its decorators."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def _declare(
        self,
        method: str,
        path: str,
        handler: Callable[..., object],
        *,
        tag: str,
        scope: Scope | None,
        params: type[BaseModel],
        body: type[BaseModel] | None,
        replies: Sequence[Reply],
        errors: Sequence[Reply],
        run: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> None:
        unknown = path_parameters(path) - set(params.model_fields)
        if unknown:
            raise ValueError(f"{path}: no field for path parameters {sorted(unknown)}")
        self.endpoints.append(
            Endpoint(
                method,
                path,
                handler.__name__,
                _summary(handler),
                tag,
                scope,
                params,
                body,
                (*replies, *_error_replies(path, scope, errors)),
                run,
            )
        )

    def json(
        self,
        method: str,
        path: str,
        *,
        reply: Any,
        scope: Scope | None,
        tag: str,
        params: type[P] = NoParams,  # type: ignore[assignment]
        status: int = 200,
        description: str = "OK",
        errors: Sequence[Reply] = (),
    ) -> Callable[[JsonHandler[P]], JsonHandler[P]]:
        """Declare a JSON endpoint whose handler takes validated parameters."""
        adapter: TypeAdapter[Any] = TypeAdapter(reply)

        def register(handler: JsonHandler[P]) -> JsonHandler[P]:
            async def run(request: web.Request) -> web.StreamResponse:
                await _authorize(request, scope)
                result = await handler(request, _parse_params(request, params))
                return _json(adapter, result, status)

            self._declare(
                method,
                path,
                handler,
                tag=tag,
                scope=scope,
                params=params,
                body=None,
                replies=(Reply(status, description, reply),),
                errors=errors,
                run=run,
            )
            return handler

        return register

    def json_with_body(
        self,
        method: str,
        path: str,
        *,
        body: type[B],
        reply: Any,
        scope: Scope | None,
        tag: str,
        params: type[P] = NoParams,  # type: ignore[assignment]
        status: int = 200,
        description: str = "OK",
        errors: Sequence[Reply] = (),
    ) -> Callable[[BodyHandler[P, B]], BodyHandler[P, B]]:
        """Declare a JSON endpoint whose handler also takes a validated JSON body."""
        adapter: TypeAdapter[Any] = TypeAdapter(reply)

        def register(handler: BodyHandler[P, B]) -> BodyHandler[P, B]:
            async def run(request: web.Request) -> web.StreamResponse:
                await _authorize(request, scope)
                parsed = _parse_params(request, params)
                result = await handler(request, parsed, await _parse_body(request, body))
                return _json(adapter, result, status)

            self._declare(
                method,
                path,
                handler,
                tag=tag,
                scope=scope,
                params=params,
                body=body,
                replies=(Reply(status, description, reply),),
                errors=errors,
                run=run,
            )
            return handler

        return register

    def stream(
        self,
        method: str,
        path: str,
        *,
        replies: Sequence[Reply],
        scope: Scope | None,
        tag: str,
        params: type[P] = NoParams,  # type: ignore[assignment]
        errors: Sequence[Reply] = (),
    ) -> Callable[[StreamHandler[P]], StreamHandler[P]]:
        """Declare an endpoint that writes its own response (streams, plain text)."""

        def register(handler: StreamHandler[P]) -> StreamHandler[P]:
            async def run(request: web.Request) -> web.StreamResponse:
                await _authorize(request, scope)
                return await handler(request, _parse_params(request, params))

            self._declare(
                method,
                path,
                handler,
                tag=tag,
                scope=scope,
                params=params,
                body=None,
                replies=replies,
                errors=errors,
                run=run,
            )
            return handler

        return register


def _json(adapter: TypeAdapter[Any], result: object, status: int) -> web.Response:
    body = result.body if isinstance(result, RawJson) else adapter.dump_json(result)
    return web.Response(body=body, status=status, content_type="application/json")


def _summary(handler: Callable[..., object]) -> str:
    return (handler.__doc__ or handler.__name__).strip().splitlines()[0]


async def _authorize(request: web.Request, scope: Scope | None) -> None:
    if scope is not None:
        app = request.app
        request[PRINCIPAL] = await app[KEYS].authenticate(
            app[DATABASE], request.headers.get("Authorization"), scope
        )
