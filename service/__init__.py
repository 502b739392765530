"""The serving layer; `tabserve.service.app.create_app(settings)` is the composition root."""

__version__ = "0.1.0"
