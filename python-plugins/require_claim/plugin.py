"""require_claim: answer 403 unless a claim has an allowed value.

    [settings]
    claim = "role"
    allowed = ["admin", "ops"]

A list-valued claim passes when any of its values is allowed.
"""

import json

from edgewarden import Response, send_to_origin, settings


def handle_request(request):
    claim = settings.get("claim")
    allowed = set(settings.get("allowed") or [])
    value = request.claims.get(claim) if claim else None
    values = value if isinstance(value, list) else [value]
    if claim and any(v in allowed for v in values if isinstance(v, (str, int))):
        return send_to_origin(request)
    body = json.dumps({"error": "forbidden", "message": f"claim {claim!r} does not allow this request"})
    return Response(403, {"content-type": "application/json"}, body)
