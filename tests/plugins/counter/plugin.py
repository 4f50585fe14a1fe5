"""counter: reports what it saw and how many calls its instance has had, to show which requests
reached it. Sets ``x-calls`` (this instance's calls so far, with the settings' ``tag``) and
``x-saw`` (the tenant header, the user agent, the country, the query and the claims' ``sub`` as
the plugin received them), and sends the request to the origin named in settings."""

from edgewarden import send_to_origin, settings

_calls = 0


def handle_request(request):
    global _calls
    _calls += 1
    request.headers["x-calls"] = f"{settings.get('tag', '')}{_calls}"
    saw = [
        f"tenant={request.headers.get('x-tenant')}",
        f"ua={request.headers.get('user-agent')}",
        f"country={request.country}",
        f"query={request.query}",
        f"sub={request.claims.get('sub')}",
        f"method={request.method or None}",
    ]
    request.headers["x-saw"] = " ".join(saw)
    request.origin = settings.get("origin")
    return send_to_origin(request)
