from edgewarden import send_to_origin


def handle_request(request)
    return send_to_origin(request)
