import json

import edgewarden
from edgewarden_pytest import load_plugin
from edgewarden import Forward, Request, Response, local_limits

plugin = load_plugin(__file__)


def configure(now):
    edgewarden.settings.update(
        {"claim": "org", "read_limit": "reads", "write_limit": "writes", "write_cost": 2}
    )
    local_limits.define("reads", rate=3, per_s=60)
    local_limits.define("writes", rate=4, per_s=60)
    local_limits.clock = lambda: now[0]


def call(method, org):
    return plugin.handle_request(Request(method=method, claims={"org": org} if org else {}))


def test_each_tenant_has_its_own_read_quota():
    configure([10**12])
    assert [isinstance(call("GET", "acme"), Forward) for _ in range(4)] == [True, True, True, False]
    assert isinstance(call("GET", "globex"), Forward)


def test_a_refused_request_gets_the_gateways_429():
    configure([10**12])
    for _ in range(3):
        call("GET", "acme")
    answer = call("GET", "acme")
    assert isinstance(answer, Response)
    assert answer.status == 429
    headers = dict(answer.headers)
    assert headers["ratelimit-policy"] == '"reads";q=3;w=60'
    assert headers["retry-after"] == "20"
    assert json.loads(answer.body)["error"] == "rate_limited"


def test_writes_cost_more_and_do_not_spend_reads():
    configure([10**12])
    assert isinstance(call("POST", "acme"), Forward)
    assert isinstance(call("DELETE", "acme"), Forward)
    assert isinstance(call("PUT", "acme"), Response)
    assert isinstance(call("GET", "acme"), Forward)


def test_requests_without_the_claim_share_one_quota():
    configure([10**12])
    for _ in range(3):
        assert isinstance(call("GET", None), Forward)
    assert isinstance(call("GET", None), Response)


def test_the_quota_comes_back_with_time():
    now = [10**12]
    configure(now)
    for _ in range(3):
        call("GET", "acme")
    assert isinstance(call("GET", "acme"), Response)
    now[0] += 20 * 10**9
    assert isinstance(call("GET", "acme"), Forward)
