"""Connects a plugin's ``handle_request`` to the gateway: the component's entry module.

componentize-py builds every plugin with this module as its application; it imports the plugin's
``plugin.py``, turns the host's request string into an ``edgewarden.Request`` and the plugin's
answer into the decision bytes (``edgewarden._wire``, ``wit/policy.wit``). Plugin authors never
import it.
"""

import os

import edgewarden
import plugin
import wit_world
from componentize_py_types import Err
from edgewarden import _wire
from wit_world.imports import host

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

#: The plugin's own files: where a traceback line counts as the plugin's.
_PLUGIN_DIR = os.path.dirname(getattr(plugin, "__file__", "") or "")

_request = _wire.request
_decision = _wire.decision


class WitWorld(wit_world.WitWorld):
    def init(self, settings_json: str) -> None:
        try:
            edgewarden._load_settings(settings_json)
            setup = getattr(plugin, "setup", None)
            if setup is not None:
                setup(edgewarden.settings)
        except Exception as e:
            raise Err(f"{type(e).__name__}: {e}")

    def handle_request(self, request: str) -> bytes:
        try:
            return _decision(plugin.handle_request(_request(request)))
        except Exception as e:
            return _wire.raised(e, _PLUGIN_DIR)


def _warm_up() -> None:
    """Run the glue's own code paths once while componentize-py builds the component: the snapshot
    it takes then holds an interpreter whose caches for these types and functions are already
    filled, so a new instance's first request does less first-time work. Touches no plugin code."""
    request = _request("GET\0/\0?a=1\0\0\0GB\0{}\0host: warm-up\n")
    request.headers.get("host")
    request.headers["x-warm-up"] = "1"
    request.claims
    _decision(edgewarden.send_to_origin(request))
    _decision(edgewarden.Response(200, {"content-type": "text/plain"}, ""))
    try:
        raise KeyError("warm-up")
    except KeyError as e:
        _wire.raised(e, _PLUGIN_DIR)
    edgewarden._load_settings("{}")


_warm_up()
