"""tenant_quota: a quota per tenant, with writes counted apart from reads and costing more.

The policy file lists the limits the plugin spends (``key = "policy"`` limits in the gateway's
configuration) and names them in its settings::

    limits = ["tenant-reads", "tenant-writes"]

    [settings]
    claim = "org"                 # the verified claim that names the tenant
    read_limit = "tenant-reads"
    write_limit = "tenant-writes"
    write_cost = 2                # a write spends this much of its limit

A request without the claim is counted under one shared key, so leaving the claim out never
escapes the quota. Past the quota, the answer is the gateway's own 429.
"""

from edgewarden import limit, send_to_origin, settings

WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def handle_request(request):
    tenant = request.claims.get(settings.get("claim", "org"))
    key = tenant if isinstance(tenant, str) and tenant else "(no tenant)"
    if request.method in WRITES:
        verdict = limit(settings["write_limit"], key, int(settings.get("write_cost", 1)))
    else:
        verdict = limit(settings["read_limit"], key)
    if not verdict:
        return verdict.response()
    return send_to_origin(request)
