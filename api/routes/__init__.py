"""One router per resource, each with its prefix and tags; `app.create_app` includes them. Routes parse
and authenticate, then call the service (`api/service.py`) or a flow module."""
