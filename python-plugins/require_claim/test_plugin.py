import json

import edgewarden
from edgewarden_pytest import load_plugin
from edgewarden import Forward, Request, Response

plugin = load_plugin(__file__)


def configure():
    edgewarden.settings.update({"claim": "role", "allowed": ["admin", "ops"]})


def test_allowed_value_is_forwarded():
    configure()
    assert isinstance(plugin.handle_request(Request(claims={"role": "ops"})), Forward)


def test_any_allowed_value_in_a_list_is_enough():
    configure()
    assert isinstance(plugin.handle_request(Request(claims={"role": ["viewer", "admin"]})), Forward)


def test_other_or_missing_values_get_403_json():
    configure()
    for claims in ({"role": "viewer"}, {}, {"role": {"admin": True}}):
        decision = plugin.handle_request(Request(claims=claims))
        assert isinstance(decision, Response)
        assert decision.status == 403
        assert json.loads(decision.body)["error"] == "forbidden"


def test_without_settings_everything_is_refused():
    assert isinstance(plugin.handle_request(Request(claims={"role": "admin"})), Response)
