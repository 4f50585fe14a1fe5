"""bare: the floor of crossing into a plugin and back, for `benches/plugins.rs`. Its ``setup``
replaces the glue's entry point with one that answers "forward unchanged" without reading the
request, so a call is only the host's side and componentize-py's: the request string lifted into
Python, the empty answer lowered back. Never ship it."""

import edgewarden_guest


def setup(settings):
    edgewarden_guest.WitWorld.handle_request = lambda self, request: b""


def handle_request(request):
    # Reached only if the replacement did not take: the benchmark then sees an exception.
    raise RuntimeError("the glue's entry point was not replaced")
