"""Connects a plugin's ``handle_request`` to the gateway: the component's entry module.

componentize-py builds every plugin with this module as its application; it imports the plugin's
``plugin.py``, converts the host's request into an ``edgewarden.Request`` and the plugin's answer
into the WIT ``decision``. Plugin authors never import it.
"""

import os

import edgewarden
import plugin
import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    Decision_Forward,
    Decision_Respond,
    ForwardAction,
    PluginError,
    Response as WitResponse,
)

_LEVELS = {
    "debug": host.LogLevel.DEBUG,
    "info": host.LogLevel.INFO,
    "warn": host.LogLevel.WARN,
    "error": host.LogLevel.ERROR,
}


def _log(level, message):
    host.log(_LEVELS.get(level, host.LogLevel.INFO), message)


edgewarden._Log.sink = staticmethod(_log)


def _limit(name, key, cost):
    try:
        verdict = host.limit(name, key, cost)
    except Err as e:
        raise ValueError(e.value) from None
    return edgewarden.LimitResult(name, verdict.allowed, verdict.rate, verdict.per_s, verdict.retry_after_s)


edgewarden._Limits.sink = staticmethod(_limit)


class WitWorld(wit_world.WitWorld):
    def init(self, settings_json: str) -> None:
        try:
            edgewarden._load_settings(settings_json)
            setup = getattr(plugin, "setup", None)
            if setup is not None:
                setup(edgewarden.settings)
        except Exception as e:
            raise Err(f"{type(e).__name__}: {e}")

    def handle_request(self, req):
        request = edgewarden.Request._from_host(
            req.method,
            req.path,
            req.query,
            req.headers,
            req.client_ip,
            req.route,
            req.claims_json,
            req.country,
        )
        try:
            return _decision(plugin.handle_request(request))
        except Exception as e:
            raise Err(_plugin_error(e))


#: The plugin's own files: where a traceback line counts as the plugin's.
_PLUGIN_DIR = os.path.dirname(getattr(plugin, "__file__", "") or "")
_MAX_MESSAGE = 300


def _plugin_error(e):
    """What the host logs of an exception: its type, its message, the plugin's line it passed."""
    location = None
    tb = e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _PLUGIN_DIR and filename.startswith(_PLUGIN_DIR + os.sep):
            location = f"{os.path.relpath(filename, _PLUGIN_DIR)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return PluginError(type(e).__name__, str(e)[:_MAX_MESSAGE], location)


#: ``send_to_origin`` of an unchanged request. The host only reads a decision, so one object
#: serves every such answer (building the two records costs more than the rest of the glue).
_UNCHANGED = Decision_Forward(ForwardAction([], [], [], None, None))


def _decision(answer):
    """The plugin's answer as the WIT decision."""
    if isinstance(answer, edgewarden.Forward):
        set_headers, append_headers, remove_headers = answer.set_headers, answer.append_headers, answer.remove_headers
        origin, path = answer.origin, answer.path
        if not (set_headers or append_headers or remove_headers) and origin is None and path is None:
            return _UNCHANGED
        # Positional, in the WIT record's field order: cheaper than keywords in the component.
        return Decision_Forward(ForwardAction(set_headers, append_headers, remove_headers, origin, path))
    if isinstance(answer, edgewarden.Response):
        return Decision_Respond(WitResponse(answer.status, answer.headers, answer.body))
    raise TypeError("handle_request must return send_to_origin(request) or Response(...)")


def _warm_up() -> None:
    """Run the glue's own code paths once while componentize-py builds the component: the snapshot
    it takes then holds an interpreter whose caches for these types and functions are already
    filled, so a new instance's first request does less first-time work. Touches no plugin code."""
    request = edgewarden.Request._from_host("GET", "/", None, "host: warm-up\n", "", "", "{}", None)
    request.headers.get("host")
    request.headers["x-warm-up"] = "1"
    request.claims
    _decision(edgewarden.send_to_origin(request))
    _decision(edgewarden.Response(200, {"content-type": "text/plain"}, ""))
    edgewarden._load_settings("{}")


_warm_up()

