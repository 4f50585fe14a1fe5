"""The seed's Geographic Content Router: one message per portal, chosen by the visitor's
x-user-location (GB, FR, anyone else). Both builds of the load test import this module: the
edgewarden policy plugin beside it and the wasi:http component in ../wasi_http."""

CONTENT_TYPE = "text/plain; charset=utf-8"

MESSAGES = {
    "GB": "Welcome to our UK portal! Prices are shown in GBP.\n",
    "FR": "Bienvenue sur notre portail français ! Les prix sont affichés en EUR.\n",
}
GLOBAL = "Welcome to our global portal! Prices are shown in USD.\n"


def portal_message(location):
    """The answer for an x-user-location value (None when the header is absent)."""
    return MESSAGES.get((location or "").strip().upper(), GLOBAL)
