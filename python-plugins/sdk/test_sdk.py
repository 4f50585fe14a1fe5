import json

import edgewarden
from edgewarden import Headers, Request, Response, _wire, send_to_origin


def test_headers_are_case_insensitive_and_multi_valued():
    h = Headers([("X-A", "1"), ("x-a", "2"), ("B", "3")])
    assert h["x-A"] == "1"
    assert h.get_all("X-A") == ["1", "2"]
    assert "b" in h and "c" not in h
    h["X-A"] = "9"
    assert h.get_all("x-a") == ["9"]
    del h["B"]
    assert "b" not in h


def test_forward_reports_only_changes():
    r = Request(headers=[("Keep", "1"), ("Drop", "x"), ("Multi", "a")], path="/a")
    del r.headers["drop"]
    r.headers["New"] = "n"
    r.headers.add("multi", "b")
    r.headers["keep"] = "1"
    r.path = "/b"
    r.origin = "eu"
    f = send_to_origin(r)
    assert f.remove_headers == ["drop"]
    assert f.set_headers == [("new", "n")]
    assert f.append_headers == [("multi", "b")]
    assert (f.origin, f.path) == ("eu", "/b")


def test_unchanged_request_forwards_nothing():
    f = send_to_origin(Request(headers={"a": "1"}))
    assert (f.set_headers, f.append_headers, f.remove_headers, f.origin, f.path) == ([], [], [], None, None)


def test_response_accepts_text_and_dict_headers():
    r = Response(201, {"content-type": "text/plain"}, "héllo")
    assert (r.status, r.headers, r.body) == (201, [("content-type", "text/plain")], "héllo".encode())


def test_settings_are_replaced_in_place():
    held = edgewarden.settings
    edgewarden._load_settings('{"GB": "uk"}')
    assert held == {"GB": "uk"}
    edgewarden._load_settings("")
    assert held == {}


def test_changes_before_and_after_the_first_read_are_both_seen():
    h = Headers((n, v) for n, v in [("A", "1"), ("B", "2")])
    h["c"] = "3"
    del h["b"]
    assert h.get("C") == "3" and "b" not in h and h["a"] == "1"
    h.add("a", "4")
    assert h.get_all("a") == ["1", "4"]
    assert sorted(h.items()) == [("a", "1"), ("a", "4"), ("c", "3")]


def test_setting_a_header_to_its_own_value_is_not_a_change():
    r = Request(headers=[("Host", "example.com"), ("X", "1"), ("X", "2")])
    r.headers["host"] = r.headers["host"]
    r.headers.add("y", "1")
    del r.headers["y"]
    del r.headers["never-there"]
    f = send_to_origin(r)
    assert (f.set_headers, f.append_headers, f.remove_headers) == ([], [], [])


def test_replacing_a_multi_valued_header_sets_then_appends():
    r = Request(headers=[("X", "1"), ("X", "2")])
    del r.headers["x"]
    r.headers.add("x", "3")
    r.headers.add("x", "4")
    f = send_to_origin(r)
    assert (f.set_headers, f.append_headers, f.remove_headers) == ([("x", "3")], [("x", "4")], [])


def test_claims_from_the_gateway_are_parsed_only_when_read():
    r = _wire.request('GET\0/\0\x00192.0.2.1\0api\0GB\0{"sub": "alice"}\0')
    assert r._claims is None
    assert r.claims["sub"] == "alice"
    assert _wire.request("GET\0/\0\x00192.0.2.1\0api\0\0\0").claims == {}


def _from_gateway(block):
    return _wire.request("GET\0/\0\x00192.0.2.1\0api\0\0\0" + block)


def test_headers_from_the_gateway_are_read_from_their_lines():
    r = _from_gateway("host: a.example\nx-multi: 1\nx-multi: two: 2\nx-empty: \n")
    assert r.headers["Host"] == "a.example"
    assert r.headers.get_all("x-multi") == ["1", "two: 2"]
    assert r.headers["x-empty"] == ""
    assert "x-missing" not in r.headers
    assert len(r.headers) == 3


def test_a_policy_that_only_adds_headers_never_splits_the_block():
    r = _from_gateway("host: a.example\nx-portal-not: 1\n")
    r.headers["x-portal"] = "uk"
    f = send_to_origin(r)
    assert f.set_headers == [("x-portal", "uk")]
    assert r.headers._pairs_list is None


def test_changes_to_headers_from_the_gateway_are_reported_against_the_originals():
    r = _from_gateway("host: a.example\nx: 1\nx: 2\nkeep: k\n")
    r.headers.add("x", "3")
    r.headers["keep"] = "k"
    del r.headers["host"]
    f = send_to_origin(r)
    assert (f.set_headers, f.append_headers, f.remove_headers) == ([], [("x", "3")], ["host"])


S = 10**9


def limits_at(now):
    """The CPython limiter on a clock the test moves (``now[0]``, nanoseconds)."""
    edgewarden.local_limits.clock = lambda: now[0]
    return edgewarden.local_limits


def test_a_limit_allows_its_burst_then_refuses_with_the_wait():
    now = [1000 * S]
    limits_at(now).define("api", rate=10, per_s=1, burst=5)
    assert [bool(edgewarden.limit("api", "k")) for _ in range(6)] == [True] * 5 + [False]
    refused = edgewarden.limit("api", "k")
    assert (refused.allowed, refused.rate, refused.per_s, refused.retry_after) == (False, 10, 1, 1)
    # One request per 100 ms comes back.
    now[0] += S // 10
    assert edgewarden.limit("api", "k")
    assert not edgewarden.limit("api", "k")


def test_keys_are_counted_apart():
    limits_at([1000 * S]).define("api", rate=1, per_s=60)
    assert edgewarden.limit("api", "a")
    assert not edgewarden.limit("api", "a")
    assert edgewarden.limit("api", "b")


def test_a_cost_spends_that_many_requests_and_a_refused_cost_spends_nothing():
    now = [1000 * S]
    limits_at(now).define("api", rate=4, per_s=4)
    assert edgewarden.limit("api", "k", cost=3)
    assert not edgewarden.limit("api", "k", cost=2)
    assert edgewarden.limit("api", "k", cost=1)
    assert not edgewarden.limit("api", "k")


def test_every_window_must_allow_and_the_tightest_refusal_is_reported():
    now = [1000 * S]
    limits_at(now).define("api", rate=10, per_s=1, windows=[{"rate": 12, "per_s": 3600}])
    assert all(edgewarden.limit("api", "k") for _ in range(10))
    assert not edgewarden.limit("api", "k")
    now[0] += 60 * S
    assert edgewarden.limit("api", "k") and edgewarden.limit("api", "k")
    refused = edgewarden.limit("api", "k")
    assert (refused.allowed, refused.rate, refused.per_s) == (False, 12, 3600)
    assert refused.retry_after == 300 - 60


def test_a_shadow_limit_allows_what_it_would_refuse():
    limits_at([1000 * S]).define("watch", rate=1, per_s=60, mode="shadow")
    assert all(edgewarden.limit("watch", "k") for _ in range(5))


def test_bad_calls_raise_value_error():
    limits_at([1000 * S]).define("api", rate=1)
    for call in (
        lambda: edgewarden.limit("undefined", "k"),
        lambda: edgewarden.limit("api", ""),
        lambda: edgewarden.limit("api", "é" * 257),
        lambda: edgewarden.limit("api", "k", cost=0),
        lambda: edgewarden.limit("api", "k", cost=1.5),
    ):
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("no ValueError")


def test_a_refusals_response_is_the_gateways_429():
    limits_at([1000 * S]).define("per-tenant", rate=2, per_s=60, burst=1)
    edgewarden.limit("per-tenant", "acme")
    answer = edgewarden.limit("per-tenant", "acme").response()
    assert answer.status == 429
    assert dict(answer.headers) == {
        "content-type": "application/json",
        "retry-after": "30",
        "ratelimit-policy": '"per-tenant";q=2;w=60',
        "ratelimit": '"per-tenant";r=0;t=30',
    }
    assert json.loads(answer.body)["error"] == "rate_limited"
