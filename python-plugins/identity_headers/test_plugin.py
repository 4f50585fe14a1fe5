import edgewarden
from edgewarden_pytest import load_plugin
from edgewarden import Request

plugin = load_plugin(__file__)
#: As the shipped policy runs it: with its [cache], the plugin sees only the claims it declares.
shipped = load_plugin(__file__, policy="../../policies/identity.toml")


def test_sub_becomes_the_internal_user_id_header():
    decision = plugin.handle_request(Request(claims={"sub": "user-42"}))
    assert decision.set_headers == [("x-internal-user-id", "user-42")]
    assert decision.remove_headers == []


def test_configured_claims_are_mapped_and_lists_joined():
    edgewarden.settings["headers"] = {"sub": "x-internal-user-id", "groups": "x-internal-groups"}
    decision = plugin.handle_request(Request(claims={"sub": "u", "groups": ["a", "b"]}))
    assert dict(decision.set_headers) == {"x-internal-user-id": "u", "x-internal-groups": "a,b"}


def test_missing_claims_set_nothing():
    decision = plugin.handle_request(Request(claims={}))
    assert decision.set_headers == []


def test_a_client_sent_copy_is_replaced_not_duplicated():
    request = Request(headers={"X-Internal-User-Id": "spoofed"}, claims={"sub": "real"})
    decision = plugin.handle_request(request)
    assert decision.set_headers == [("x-internal-user-id", "real")]
    assert request.headers.get_all("x-internal-user-id") == ["real"]


def test_the_shipped_policy_sees_only_the_claims_its_cache_declares():
    edgewarden.settings["headers"] = {"sub": "x-internal-user-id", "email": "x-internal-email"}
    claims = {"sub": "u", "email": "u@example.com", "groups": ["a"]}
    decision = shipped.handle_request(Request(claims=claims))
    assert dict(decision.set_headers) == {"x-internal-user-id": "u", "x-internal-email": "u@example.com"}
    # A mapping of a claim the cache does not declare: the claim is absent, so nothing is set.
    edgewarden.settings["headers"] = {"groups": "x-internal-groups"}
    assert shipped.handle_request(Request(claims=claims)).set_headers == []
