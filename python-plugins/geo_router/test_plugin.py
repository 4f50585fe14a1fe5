import edgewarden
from edgewarden_pytest import load_plugin
from edgewarden import Request

plugin = load_plugin(__file__, policy="../../policies/geo.toml")


def configure():
    edgewarden.settings.update({"GB": "uk", "FR": "fr", "default": "global", "header": "x-portal"})


def test_gb_goes_to_the_uk_portal():
    configure()
    decision = plugin.handle_request(Request(country="GB"))
    assert decision.origin == "uk"
    assert decision.set_headers == [("x-portal", "uk")]


def test_fr_goes_to_the_french_portal_whatever_the_case():
    configure()
    assert plugin.handle_request(Request(country="fr")).origin == "fr"


def test_everyone_else_and_unknown_country_go_to_the_default():
    configure()
    assert plugin.handle_request(Request(country="US")).origin == "global"
    assert plugin.handle_request(Request(country=None)).origin == "global"


def test_without_settings_the_route_keeps_its_origin():
    decision = plugin.handle_request(Request(country="GB"))
    assert decision.origin is None
    assert decision.set_headers == []
