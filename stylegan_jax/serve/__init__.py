"""`stylegan-jax serve`: a web page and an HTTP API that show a network's images.

`render` turns a network into one traceable function with per-sample truncation,
`batcher` gathers concurrent requests into one compiled generator call, `state` holds what
the handlers share, `routes` are the module-level handlers, `app` assembles the Starlette
application, `command` the subcommand that loads, warms up and serves.
"""
