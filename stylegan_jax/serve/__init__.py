"""`stylegan-jax serve`: a web page and an HTTP API that show a network's images.

`render` turns a network into one traceable function with per-sample truncation (and a
latent edit per sample), `batcher` gathers concurrent requests into one compiled generator
call, `sliders` holds the latent directions an `edit` names, `uploads` reads and decodes
uploaded images safely, `attribution_queue` runs their projections on a worker of their own
behind a small limit (`projector` builds it from the flags), `state` holds what the
handlers share, `routes` are the module-level handlers, `app` assembles the Starlette
application, `command` the subcommand that loads, warms up and serves.
"""
