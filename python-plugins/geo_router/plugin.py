"""geo_router: send each visitor to the portal for their country.

Settings map a two-letter country code to an origin name, plus ``default`` for everyone else.
With ``header`` set, the chosen portal is also passed to the origin in that header.

    [settings]
    GB = "uk"
    FR = "fr"
    default = "global"
    header = "x-portal"
"""

from edgewarden import send_to_origin, settings


def handle_request(request):
    country = (request.country or "").upper()
    portal = settings.get(country) if len(country) == 2 else None
    portal = portal or settings.get("default")
    if portal:
        request.origin = str(portal)
        header = settings.get("header")
        if header:
            request.headers[str(header)] = str(portal)
    return send_to_origin(request)
