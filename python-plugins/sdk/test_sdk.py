import edgewarden
from edgewarden import Headers, Request, Response, send_to_origin


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
