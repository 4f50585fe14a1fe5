"""The seed's Geographic Content Router as a wasi:http/proxy component (served by `wasmtime
serve`), with the same logic as the edgewarden policy: portal.py from ../seed_geo."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

from portal import CONTENT_TYPE, portal_message


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        with request.headers() as fields:
            values = fields.get("x-user-location")
        location = values[0].decode("latin-1") if values else None
        body = portal_message(location).encode("utf-8")
        response = OutgoingResponse(Fields.from_list([("content-type", CONTENT_TYPE.encode())]))
        response.set_status_code(200)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with outgoing.write() as stream:
            stream.blocking_write_and_flush(body)
        OutgoingBody.finish(outgoing, None)
