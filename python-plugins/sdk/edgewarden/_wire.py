"""How a request and a decision cross between the gateway and a plugin (``wit/policy.wit``): the
request arrives as one string of NUL-separated fields, the decision leaves as one ``bytes``. One
value each way, because inside the component every value that crosses is its own trip into the
interpreter. Plain Python, so the SDK's tests check it against the vectors the gateway checks too
(``wire_vectors.json``). Plugin authors never use it.
"""

from __future__ import annotations

import json
import os

from . import Forward, Headers, Request, Response

_new_headers = Headers.__new__
_new_request = Request.__new__

#: Forward unchanged.
UNCHANGED = b""

_MAX_MESSAGE = 300


def request(text: str) -> Request:
    """The gateway's request string as the ``Request`` a plugin sees. Built field by field rather
    than through ``Request()``: this runs for every call, and each Python call it saves is about a
    tenth of a microsecond inside the component. Claims stay JSON text until a policy reads them;
    headers stay one block until a policy reads one."""
    method, path, query, client_ip, route, country, claims, block = text.split("\0", 7)
    headers = _new_headers(Headers)
    headers._block = block
    headers._pairs_list = None
    headers._map = None
    headers._changes = {}
    request = _new_request(Request)
    request.method = method
    request.path = path
    request.query = query[1:] if query else None
    request.headers = headers
    request.client_ip = client_ip
    request.route = route
    request._claims = None
    request._claims_json = claims or None
    request.country = country or None
    request.origin = None
    request._original_path = path
    return request


def view(original: Request, inputs) -> Request:
    """``original`` as a policy with ``[cache]`` and these ``inputs`` receives it from the gateway
    (``src/plugins/wire.rs``, ``view``): only the declared inputs, everything else absent, the query
    always. Written as the gateway's request string and read back as the gateway's would be."""
    names = set(inputs)
    claims = ""
    if "claims" in names:
        claims = json.dumps(original.claims, separators=(",", ":"), sort_keys=True)
    elif any(i.startswith("claim:") for i in inputs) and (original.claims or original._claims_json):
        picked: dict = {}
        for name in inputs:
            if not name.startswith("claim:"):
                continue
            path = name[len("claim:"):].split(".")
            value, found = original.claims, True
            for key in path:
                if isinstance(value, dict) and key in value:
                    value = value[key]
                else:
                    found = False
                    break
            if found:
                at = picked
                for key in path[:-1]:
                    at = at.setdefault(key, {})
                at[path[-1]] = value
        claims = json.dumps(picked, separators=(",", ":"), sort_keys=True)
    fields = [
        original.method if "method" in names else "",
        original.path if "path" in names else "",
        "",
        original.client_ip if "client_ip" in names else "",
        original.route if "route" in names else "",
        (original.country or "") if "country" in names else "",
        claims,
    ]
    lines = []
    for name in inputs:
        if name.startswith("header:"):
            header = name[len("header:"):].lower()
            lines.extend(f"{header}: {value}\n" for value in original.headers.get_all(header))
    return request("\0".join(fields) + "\0" + "".join(lines))


def decision(answer) -> bytes:
    """A plugin's answer (``send_to_origin(...)`` or ``Response(...)``) as the gateway reads it."""
    if isinstance(answer, Forward):
        set_headers, append_headers, remove_headers = answer.set_headers, answer.append_headers, answer.remove_headers
        origin, path = answer.origin, answer.path
        if not (set_headers or append_headers or remove_headers) and origin is None and path is None:
            return UNCHANGED
        flags = (origin is not None) | ((path is not None) << 1)
        parts = [f"F{len(set_headers)} {len(append_headers)} {len(remove_headers)} {flags}"]
        for name, value in set_headers:
            parts.append(name)
            parts.append(value)
        for name, value in append_headers:
            parts.append(name)
            parts.append(value)
        parts.extend(remove_headers)
        if origin is not None:
            parts.append(origin)
        if path is not None:
            parts.append(path)
        parts.append("")
        return "\0".join(parts).encode()
    if isinstance(answer, Response):
        parts = [f"R{answer.status} {len(answer.headers)} {len(answer.body)}"]
        for name, value in answer.headers:
            parts.append(name)
            parts.append(value)
        parts.append("")
        return "\0".join(parts).encode() + answer.body
    raise TypeError("handle_request must return send_to_origin(request) or Response(...)")


def raised(error: BaseException, plugin_dir: str) -> bytes:
    """An exception that escaped ``handle_request``: its type, its message (at most 300
    characters) and the innermost line of the plugin's own files (under ``plugin_dir``) it
    passed. NULs in them are dropped so the gateway reads exactly three fields."""
    location = ""
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if plugin_dir and filename.startswith(plugin_dir + os.sep):
            location = f"{os.path.relpath(filename, plugin_dir)}:{tb.tb_lineno}"
        tb = tb.tb_next
    try:
        message = str(error)[:_MAX_MESSAGE]
    except Exception:
        message = "(the exception's message could not be read)"
    fields = (type(error).__name__, message, location)
    return ("E" + "\0".join(field.replace("\0", "") for field in fields)).encode("utf-8", "replace")
