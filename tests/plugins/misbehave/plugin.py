"""A plugin that misbehaves on request (see tests/plugins/README.md)."""

import time

from edgewarden import Response, log, send_to_origin


#: The mode of requests without an `x-misbehave` header (the `mode` setting).
_default_mode = ""


def setup(settings):
    global _default_mode
    if settings.get("sleep_in_setup"):
        time.sleep(3600)
    _default_mode = settings.get("mode", "")


#: Module state that outlives a request unless the instance is fresh for each one.
_kept = []


def recurse(n):
    return recurse(n + 1) + 1


def handle_request(request):
    mode = request.headers.get("x-misbehave", _default_mode)
    if mode == "loop":
        while True:
            pass
    if mode == "sleep":
        time.sleep(30)
    if mode == "alloc":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if mode == "raise":
        raise RuntimeError("this plugin raises")
    if mode == "log-then-raise":
        log.info("checking " + request.path)
        log.warn("about to raise")
        raise RuntimeError("this plugin raises after logging")
    if mode == "recurse":
        return recurse(0)
    if mode == "crlf-header":
        request.headers["x-misbehave-ok"] = "1\r\nx-injected: yes"
        return send_to_origin(request)
    if mode == "nul-header":
        # A NUL in a value would end the field early: the rest would read as another header.
        request.headers["x-misbehave-ok"] = "1\0x-misbehave-ok\0admin"
        return send_to_origin(request)
    if mode == "forbidden-header":
        request.headers["x-internal-user-id"] = "admin"
        return send_to_origin(request)
    if mode == "unknown-origin":
        request.origin = "elsewhere"
        return send_to_origin(request)
    if mode == "count":
        _kept.append("x" * 65536)
        request.headers["x-misbehave-ok"] = str(len(_kept))
        return send_to_origin(request)
    if mode == "grow":
        _kept.append(bytearray(12 << 20))
        request.headers["x-misbehave-ok"] = str(len(_kept))
        return send_to_origin(request)
    if mode == "pass":
        return send_to_origin(request)
    if mode == "bad-status":
        return Response(99, {}, "")
    request.headers["x-misbehave-ok"] = "1"
    return send_to_origin(request)
