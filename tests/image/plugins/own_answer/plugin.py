"""own_answer: a user's own plugin, built into an image beside the shipped ones (scripts/image-with-plugins)."""

from edgewarden import Response, settings


def handle_request(request):
    return Response(200, {"content-type": "text/plain"}, settings.get("answer", "own plugin") + "\n")
