"""seed_geo: the seed's Geographic Content Router as an edgewarden policy that answers directly.
The gateway sets x-user-location itself (from its geo context), so the header is trusted here."""

from edgewarden import Response

from portal import CONTENT_TYPE, portal_message


def handle_request(request):
    message = portal_message(request.headers.get("x-user-location"))
    return Response(200, {"content-type": CONTENT_TYPE}, message)
