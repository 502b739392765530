"""tabserve: the serving layer. `create_app(settings)` is the composition root."""
