"""HTTP API of the serving layer: routes and the wire codecs they use."""
