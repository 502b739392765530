"""tabserve: serving for scikit-learn-API models.

The installed distribution holds one top-level package, `tabserve`: the service is
`tabserve.service` and training with the artifact format is `tabserve.training`
(in the repository they are the top-level `service/` and `training/` folders, linked
here), so a `pip install` puts no generic `service` or `training` package into a
user's environment.
"""

from tabserve.service import __version__

__all__ = ["__version__"]
