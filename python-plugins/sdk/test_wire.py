"""The SDK's side of the request and decision encodings, against the vectors the gateway's
``src/plugins/wire.rs`` checks too."""

import json
import pathlib

import pytest

from edgewarden import Forward, Request, Response, _wire

VECTORS = json.loads((pathlib.Path(__file__).parent / "wire_vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["requests"], ids=lambda v: v["method"])
def test_requests_are_read_as_the_vectors_say(vector):
    request = _wire.request(vector["wire"])
    assert (request.method, request.path, request.query) == (vector["method"], vector["path"], vector["query"])
    assert (request.client_ip, request.route, request.country) == (
        vector["client_ip"],
        vector["route"],
        vector["country"],
    )
    assert request.claims == (json.loads(vector["claims_json"]) if vector["claims_json"] else {})
    assert request.headers.items() == [tuple(pair) for pair in vector["headers"]]
    assert request.origin is None


def _answer(vector):
    if vector["kind"] == "forward":
        return Forward(
            [tuple(p) for p in vector["set"]],
            [tuple(p) for p in vector["append"]],
            list(vector["remove"]),
            vector["origin"],
            vector["path"],
        )
    return Response(vector["status"], [tuple(p) for p in vector["headers"]], vector["body"])


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS["decisions"] if v["kind"] != "raised"], ids=lambda v: v["wire"][:12] or "unchanged"
)
def test_decisions_are_written_as_the_vectors_say(vector):
    written = _wire.decision(_answer(vector))
    assert type(written) is bytes, "the component's list<u8> must be exact bytes"
    assert written == vector["wire"].encode()


def _raise_in_plugin(tmp_path, message, kind=KeyError):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(f"def handle_request(request):\n    raise {kind.__name__}({message!r})\n")
    code = compile(plugin.read_text(), str(plugin), "exec")
    scope = {}
    exec(code, scope)
    try:
        scope["handle_request"](None)
    except Exception as e:
        return e
    raise AssertionError("the plugin did not raise")


def test_an_exception_names_its_type_message_and_the_plugins_line(tmp_path):
    error = _raise_in_plugin(tmp_path, "tier")
    assert _wire.raised(error, str(tmp_path)) == b"EKeyError\0'tier'\0plugin.py:2"
    # Outside the plugin's files there is no location.
    assert _wire.raised(error, str(tmp_path / "elsewhere")) == b"EKeyError\0'tier'\0"


def test_an_exception_report_is_always_three_fields_and_bounded(tmp_path):
    error = _raise_in_plugin(tmp_path, "a\0b" + "é" * 1000, ValueError)
    written = _wire.raised(error, str(tmp_path))
    kind, message, location = written.split(b"\0")
    assert (kind, location) == (b"EValueError", b"plugin.py:2")
    assert message.decode() == "ab" + "é" * 297


def test_a_nul_in_a_header_value_is_written_as_is_for_the_gateway_to_refuse():
    # The count says one pair; the NUL makes the gateway read three fields and refuse the answer.
    written = _wire.decision(Forward([("x-a", "1\0x-admin\0yes")], [], [], None, None))
    assert written == b"F1 0 0 0\0x-a\x001\0x-admin\0yes\0"


def test_anything_else_is_a_type_error():
    with pytest.raises(TypeError):
        _wire.decision(None)


def test_a_cached_policy_sees_only_its_inputs_as_the_gateway_passes_them():
    # The same request and views as src/plugins/wire.rs's a_cached_policy_sees_only_its_declared_inputs.
    original = Request(
        method="POST",
        path="/a",
        query="secret=1",
        headers=[("x-tenant", "t1"), ("cookie", "s=1"), ("x-tenant", "t2")],
        client_ip="192.0.2.1",
        route="r",
        claims={"sub": "alice", "org": {"id": 7, "name": "Acme"}, "exp": 4102444800},
        country="GB",
    )
    seen = _wire.view(original, ["country"])
    assert (seen.country, seen.method, seen.path, seen.query, seen.route, seen.client_ip) == ("GB", "", "", None, "", "")
    assert seen.claims == {} and seen.headers.items() == []
    seen = _wire.view(original, ["header:x-tenant", "method", "path"])
    assert (seen.method, seen.path, seen.query, seen.country) == ("POST", "/a", None, None)
    assert seen.headers.items() == [("x-tenant", "t1"), ("x-tenant", "t2")]
    seen = _wire.view(original, ["claim:org.id", "claim:sub", "claim:missing.x"])
    assert seen._claims_json == '{"org":{"id":7},"sub":"alice"}'
    assert _wire.view(Request(route="r"), ["claim:sub", "route"]).claims == {}
