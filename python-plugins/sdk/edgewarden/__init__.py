"""edgewarden policy SDK: what a Python policy plugin sees.

A plugin is a module ``plugin.py`` with one function::

    from edgewarden import Response, send_to_origin, settings

    def handle_request(request):
        if request.country == "GB":
            request.origin = settings.get("GB", "uk")
        return send_to_origin(request)

``handle_request`` returns either ``send_to_origin(request)`` (forward, with any changes made to
``request.headers``, ``request.origin`` and ``request.path``) or ``Response(status, headers, body)``
(answer directly). ``settings`` holds the policy file's ``[settings]`` table.

``limit("name", key)`` spends from a configured ``key = "policy"`` limit for a key the plugin
computed (a tenant, an API key's owner, ...) and says whether the request is within it::

    verdict = limit("per-tenant", request.headers.get("x-tenant", "none"))
    if not verdict:
        return verdict.response()   # the gateway's 429, with Retry-After and RateLimit fields

This module is plain Python: the same code runs in CPython under pytest and inside the gateway as a
WebAssembly component (where the ``edgewarden_guest`` module connects it to the host).
"""

from __future__ import annotations

import json
import time
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

__all__ = [
    "Headers",
    "Request",
    "Response",
    "Forward",
    "send_to_origin",
    "settings",
    "log",
    "limit",
    "LimitResult",
    "LocalLimits",
    "local_limits",
]

#: The policy's ``[settings]`` table. Filled in place before the first request.
settings: Dict[str, object] = {}


class Headers:
    """Case-insensitive, multi-valued, mutable header mapping.

    ``headers["X-A"]`` is the first value (``KeyError`` when absent), ``headers.get_all(name)`` every
    value, ``headers[name] = value`` replaces all values, ``headers.add(name, value)`` appends,
    ``del headers[name]`` removes every value.

    The gateway passes the headers as one block of lines, split into a mapping on first read, and
    every change is recorded: a policy that only sets headers never splits the block, and
    ``send_to_origin`` reports changes without comparing copies.
    """

    __slots__ = ("_block", "_pairs_list", "_map", "_changes")

    def __init__(self, pairs: Iterable[Tuple[str, str]] = ()):
        self._block: Optional[str] = None
        self._pairs_list: Optional[List[Tuple[str, str]]] = pairs if isinstance(pairs, list) else list(pairs)
        self._map: Optional[Dict[str, List[str]]] = None
        #: name -> values after the changes (an empty list: removed).
        self._changes: Dict[str, List[str]] = {}

    @property
    def _pairs(self) -> List[Tuple[str, str]]:
        if self._pairs_list is None:
            pairs = []
            for line in (self._block or "").split("\n"):
                name, sep, value = line.partition(": ")
                if sep:
                    pairs.append((name, value))
            self._pairs_list = pairs
        return self._pairs_list

    def _values(self) -> Dict[str, List[str]]:
        if self._map is None:
            built: Dict[str, List[str]] = {}
            for name, value in self._pairs:
                name = name.lower()
                if name in built:
                    built[name].append(value)
                else:
                    built[name] = [value]
            for name, values in self._changes.items():
                if values:
                    built[name] = list(values)
                else:
                    built.pop(name, None)
            self._map = built
        return self._map

    def _original(self, name: str) -> List[str]:
        block = self._block
        if self._pairs_list is None and block is not None:
            # Most changes add a header the request did not have: answer without splitting.
            line = name + ": "
            if not block.startswith(line) and "\n" + line not in block:
                return []
        return [value for n, value in self._pairs if n.lower() == name]

    def __getitem__(self, name: str) -> str:
        values = self._values().get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self._values().get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> List[str]:
        return list(self._values().get(name.lower(), []))

    def __setitem__(self, name: str, value: str) -> None:
        name = name.lower()
        self._changes[name] = [str(value)]
        if self._map is not None:
            self._map[name] = [str(value)]

    def add(self, name: str, value: str) -> None:
        name = name.lower()
        current = self._changes.get(name)
        if current is None:
            current = self._changes[name] = list(self._values().get(name, []))
        current.append(str(value))
        if self._map is not None:
            self._map[name] = list(current)

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self._changes[name] = []
        if self._map is not None:
            self._map.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values()))

    def __len__(self) -> int:
        return len(self._values())

    def items(self) -> List[Tuple[str, str]]:
        return [(name, value) for name, values in self._values().items() for value in values]


class Request:
    """The request as the policy sees it. ``headers``, ``origin`` and ``path`` may be changed."""

    __slots__ = (
        "method",
        "path",
        "query",
        "headers",
        "client_ip",
        "route",
        "_claims",
        "_claims_json",
        "country",
        "origin",
        "_original_path",
    )

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        query: Optional[str] = None,
        headers: Union[Headers, Iterable[Tuple[str, str]], Dict[str, str]] = (),
        client_ip: str = "127.0.0.1",
        route: str = "",
        claims: Optional[dict] = None,
        country: Optional[str] = None,
    ):
        if isinstance(headers, dict):
            headers = list(headers.items())
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers if isinstance(headers, Headers) else Headers(list(headers))
        self.client_ip = client_ip
        self.route = route
        self._claims = claims or {}
        self._claims_json = None
        #: Two-letter country code decided by the gateway, or None.
        self.country = country
        #: Origin name to send the request to; None keeps the route's origin.
        self.origin: Optional[str] = None
        self._original_path = path

    @property
    def claims(self) -> dict:
        """Verified token claims (empty when the route has no token)."""
        if self._claims is None:
            self._claims = json.loads(self._claims_json) if self._claims_json else {}
        return self._claims

    @claims.setter
    def claims(self, value: dict) -> None:
        self._claims = value


class Response:
    """Answer the request directly."""

    def __init__(self, status: int = 200, headers: Union[Dict[str, str], Iterable[Tuple[str, str]]] = (), body: Union[str, bytes] = b""):
        self.status = int(status)
        self.headers = list(headers.items()) if isinstance(headers, dict) else [(str(k), str(v)) for k, v in headers]
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.body!r})"


class Forward:
    """Send the request on to the origin with these changes (see ``send_to_origin``)."""

    def __init__(self, set_headers, append_headers, remove_headers, origin, path):
        self.set_headers: List[Tuple[str, str]] = set_headers
        self.append_headers: List[Tuple[str, str]] = append_headers
        self.remove_headers: List[str] = remove_headers
        self.origin: Optional[str] = origin
        self.path: Optional[str] = path

    def __repr__(self) -> str:
        return (
            f"Forward(set={self.set_headers!r}, append={self.append_headers!r}, "
            f"remove={self.remove_headers!r}, origin={self.origin!r}, path={self.path!r})"
        )


def send_to_origin(request: Request) -> Forward:
    """Forward ``request`` with the changes made to it, expressed as header operations."""
    path = request.path if request.path != request._original_path else None
    headers = request.headers
    if not headers._changes:
        return Forward([], [], [], request.origin, path)
    set_headers: List[Tuple[str, str]] = []
    append_headers: List[Tuple[str, str]] = []
    remove_headers: List[str] = []
    for name, values in headers._changes.items():
        old = headers._original(name)
        if old == values:
            continue
        if not values:
            remove_headers.append(name)
            continue
        if old and values[: len(old)] == old:
            added = values[len(old):]
        else:
            set_headers.append((name, values[0]))
            added = values[1:]
        for value in added:
            append_headers.append((name, value))
    return Forward(set_headers, append_headers, remove_headers, request.origin, path)


class _Log:
    """Log through the gateway (plain ``print`` goes nowhere inside the gateway)."""

    sink = None  # set by the guest glue; under CPython messages go to stderr

    def _emit(self, level: str, message: str) -> None:
        if _Log.sink is not None:
            _Log.sink(level, str(message))
        else:
            import sys

            print(f"[{level}] {message}", file=sys.stderr)

    def debug(self, message: str) -> None:
        self._emit("debug", message)

    def info(self, message: str) -> None:
        self._emit("info", message)

    def warn(self, message: str) -> None:
        self._emit("warn", message)

    def error(self, message: str) -> None:
        self._emit("error", message)


log = _Log()


def _load_settings(settings_json: str) -> None:
    """Replace ``settings`` in place (plugins may hold a reference to it)."""
    loaded = json.loads(settings_json) if settings_json else {}
    if not isinstance(loaded, dict):
        raise ValueError("settings must be a table")
    settings.clear()
    settings.update(loaded)


class LimitResult:
    """What ``limit`` decided. True when the request is within the limit (a limit in shadow mode
    always says so); refused, ``retry_after`` is the whole seconds until the same call fits."""

    __slots__ = ("name", "allowed", "rate", "per_s", "retry_after")

    def __init__(self, name: str, allowed: bool, rate: int, per_s: int, retry_after: int):
        self.name = name
        self.allowed = bool(allowed)
        #: The quota: ``rate`` requests per ``per_s`` seconds (the window that decided).
        self.rate = int(rate)
        self.per_s = int(per_s)
        self.retry_after = int(retry_after)

    def __bool__(self) -> bool:
        return self.allowed

    def __repr__(self) -> str:
        return (
            f"LimitResult({self.name!r}, allowed={self.allowed}, rate={self.rate}, "
            f"per_s={self.per_s}, retry_after={self.retry_after})"
        )

    def response(self) -> "Response":
        """The answer the gateway gives a request its own limits refuse: 429 with ``Retry-After``,
        the ``RateLimit-Policy`` and ``RateLimit`` structured fields, and a small JSON body."""
        return Response(
            429,
            [
                ("content-type", "application/json"),
                ("retry-after", str(self.retry_after)),
                ("ratelimit-policy", f'"{self.name}";q={self.rate};w={self.per_s}'),
                ("ratelimit", f'"{self.name}";r=0;t={self.retry_after}'),
            ],
            json.dumps(
                {
                    "error": "rate_limited",
                    "message": "too many requests; retry after the time in Retry-After",
                },
                separators=(",", ":"),
            ),
        )


#: The gateway's limits on a key: 1 to 512 bytes (UTF-8), a cost of 1 to 1,000,000.
_MAX_KEY_BYTES = 512
_MAX_COST = 1_000_000
_NS = 1_000_000_000


class _Window:
    """One GCRA window, in nanoseconds, with the gateway's arithmetic (``src/shield/gcra.rs``)."""

    __slots__ = ("rate", "per_s", "interval", "tolerance")

    def __init__(self, rate: int, per_s: int, burst: Optional[int]):
        rate, per_s = max(1, int(rate)), max(1, int(per_s))
        burst = max(1, int(rate if burst is None else burst))
        self.rate, self.per_s = rate, per_s
        self.interval = max(1, per_s * _NS // rate)
        self.tolerance = self.interval * burst

    def check(self, tat: int, now: int, cost: int) -> Tuple[bool, int, int]:
        """(allowed, the new TAT or 0, nanoseconds until allowed)."""
        new_tat = max(tat, now) + self.interval * cost
        ahead = new_tat - now
        if ahead <= self.tolerance:
            return True, new_tat, 0
        return False, 0, ahead - self.tolerance


class LocalLimits:
    """The limiter ``limit`` uses under plain CPython (a plugin's tests): limits defined here with
    the fields of a ``[[limits]]`` entry, counted in memory with the gateway's GCRA. ``clock``
    returns nanoseconds and may be replaced to drive time in a test.

    Inside the gateway, ``limit`` asks the gateway instead, which counts in its own store (local or
    Redis) and only allows the limits the policy file lists.
    """

    def __init__(self):
        self.clock = time.monotonic_ns
        self._limits: Dict[str, Tuple[List[_Window], bool]] = {}
        self._tats: Dict[Tuple[str, str], List[int]] = {}

    def define(
        self,
        name: str,
        rate: int,
        per_s: int = 1,
        burst: Optional[int] = None,
        windows: Iterable[dict] = (),
        mode: str = "enforce",
    ) -> None:
        """Define (or redefine, from fresh counters) a limit, as ``[[limits]]`` would."""
        if mode not in ("enforce", "shadow"):
            raise ValueError(f"mode must be 'enforce' or 'shadow', not {mode!r}")
        shapes = [_Window(rate, per_s, burst)]
        shapes += [_Window(w["rate"], w.get("per_s", 1), w.get("burst")) for w in windows]
        self._limits[name] = (shapes, mode == "shadow")
        for key in [k for k in self._tats if k[0] == name]:
            del self._tats[key]

    def reset(self) -> None:
        """Forget every limit and counter, and go back to the real clock."""
        self._limits.clear()
        self._tats.clear()
        self.clock = time.monotonic_ns

    def check(self, name: str, key: str, cost: int = 1) -> LimitResult:
        defined = self._limits.get(name)
        if defined is None:
            raise ValueError(f"no limit {name!r}: define it with local_limits.define(...)")
        shapes, shadow = defined
        now = self.clock()
        tats = self._tats.get((name, key)) or [0] * len(shapes)
        verdicts = [shape.check(tat, now, cost) for shape, tat in zip(shapes, tats)]
        refused = [(wait, i) for i, (ok, _, wait) in enumerate(verdicts) if not ok]
        if not refused:
            self._tats[(name, key)] = [new for _, new, _ in verdicts]
            return LimitResult(name, True, shapes[0].rate, shapes[0].per_s, 0)
        wait, window = max(refused)
        shape = shapes[window]
        if shadow:
            return LimitResult(name, True, shape.rate, shape.per_s, 0)
        return LimitResult(name, False, shape.rate, shape.per_s, max(1, -(-wait // _NS)))


#: The limiter of plain CPython runs.
local_limits = LocalLimits()


class _Limits:
    sink = None  # set by the guest glue: the gateway's limits


def limit(name: str, key: str, cost: int = 1) -> LimitResult:
    """Spend ``cost`` from the limit ``name`` for ``key`` and say whether the request is within it.

    ``name`` is a ``[[limits]]`` entry with ``key = "policy"`` that the policy file lists in its
    ``limits``; ``key`` is 1 to 512 bytes of UTF-8 (hash anything longer); ``cost`` is 1 to
    1,000,000. Anything else raises ``ValueError``. Under plain CPython the limit comes from
    ``local_limits``."""
    key = str(key)
    size = len(key.encode("utf-8"))
    if not 1 <= size <= _MAX_KEY_BYTES:
        raise ValueError(f"a limit key has 1 to {_MAX_KEY_BYTES} bytes, not {size}")
    if not isinstance(cost, int) or not 1 <= cost <= _MAX_COST:
        raise ValueError(f"a cost is 1 to {_MAX_COST}, not {cost!r}")
    if _Limits.sink is not None:
        return _Limits.sink(name, key, cost)
    return local_limits.check(name, key, cost)
