"""Routers of the time-bank flows (people, supervision, certificates), each with its prefix and tags;
`app.create_app` includes them."""
