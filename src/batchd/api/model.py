"""Routes and input shapes, read from the Batch service model of the installed botocore.

Nothing here is a hand-kept list: every operation in `batch/2016-08-10` gets a route.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    # "/v1/submitjob", or a prefix like "/v1/tags/" for a URI with one {label} at the end.
    path: str
    uri_label: str | None
    operation: OperationModel

    @property
    def input_shape(self) -> Shape | None:
        return self.operation.input_shape


@functools.cache
def service_model(name: str = "batch") -> ServiceModel:
    return botocore.session.get_session().get_service_model(name)


@functools.cache
def routes() -> tuple[dict[tuple[str, str], Route], dict[tuple[str, str], Route]]:
    """(exact routes keyed by (method, path), prefix routes keyed by (method, prefix))."""
    exact: dict[tuple[str, str], Route] = {}
    prefixed: dict[tuple[str, str], Route] = {}
    model = service_model()
    for name in model.operation_names:
        op = model.operation_model(name)
        method = op.http["method"].upper()
        uri = op.http["requestUri"].split("?")[0]
        if "{" in uri:
            prefix, _, label = uri.partition("{")
            label = label.rstrip("}+")
            prefixed[(method, prefix)] = Route(name, method, prefix, label, op)
        else:
            exact[(method, uri)] = Route(name, method, uri, None, op)
    return exact, prefixed


def match(method: str, raw_path: str) -> tuple[Route | None, str | None, bool]:
    """Find the operation for a request: (route, uri label value, path known under another method)."""
    exact, prefixed = routes()
    path = raw_path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    route = exact.get((method, path)) or exact.get((method, path.lower()))
    if route is not None:
        return route, None, False
    for (m, prefix), r in prefixed.items():
        if path.startswith(prefix) and len(path) > len(prefix) and m == method:
            return r, unquote(path[len(prefix):]), False
    other_method = any(p == path for (_, p) in exact) or any(
        path.startswith(p) and len(path) > len(p) for (_, p) in prefixed
    )
    return None, None, other_method


def query_params(query_string: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        out.setdefault(k, []).append(v)
    return out


@functools.cache
def _located_members(route: Route) -> tuple[tuple[str, str, str, bool], ...]:
    """(member, location, wire name, is list) for the members that travel outside the JSON body."""
    shape = route.input_shape
    if shape is None:
        return ()
    out = []
    for name, member in shape.members.items():
        loc = member.serialization.get("location")
        if loc in ("uri", "querystring"):
            out.append((name, loc, member.serialization.get("name", name), member.type_name == "list"))
    return tuple(out)


def bind_input(route: Route, body: dict, label_value: str | None, query: dict[str, list[str]]) -> dict:
    """Place URI and query-string members into the request parameters, as botocore serialised them."""
    located = _located_members(route)
    if not located:
        return body
    params = dict(body)
    for name, loc, wire, is_list in located:
        if loc == "uri" and label_value is not None:
            params[name] = label_value
        elif loc == "querystring" and wire in query:
            values = query[wire]
            params[name] = values if is_list else values[-1]
    return params
