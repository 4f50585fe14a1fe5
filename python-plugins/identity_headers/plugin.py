"""identity_headers: pass verified token claims to the origin as headers.

Settings map a claim name to a header name (default: ``sub`` → ``x-internal-user-id``). Claims
that are missing are skipped; lists are joined with ",".

    [settings.headers]
    sub = "x-internal-user-id"
    email = "x-internal-email"
"""

from edgewarden import send_to_origin, settings

DEFAULT = {"sub": "x-internal-user-id"}


def handle_request(request):
    mapping = settings.get("headers") or DEFAULT
    for claim, header in mapping.items():
        value = request.claims.get(claim)
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        request.headers[header] = str(value)
    return send_to_origin(request)
