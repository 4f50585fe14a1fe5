"""forward_only: forwards every request unchanged. The floor of a warm plugin call in the
benchmarks: what crossing into Python and back costs before a policy does anything."""

from edgewarden import send_to_origin


def handle_request(request):
    return send_to_origin(request)
