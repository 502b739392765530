"""tabserve: serving for scikit-learn-API models.

The installed distribution holds one top-level package, `tabserve`: the service is
`tabserve.service`, training is `tabserve.training` (in the repository they are the
top-level `service/` and `training/` folders, linked here) and the artifact format both
share is `tabserve.artifact`, so a `pip install` puts no generic `service` or `training`
package into a user's environment.

From a notebook, `tabserve.export(model, X, y, name="churn")` writes a fitted model as
a served version (see `tabserve.training.export.export`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tabserve.service import __version__

if TYPE_CHECKING:
    from tabserve.training.errors import ExportError
    from tabserve.training.export import export

__all__ = ["ExportError", "__version__", "export"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `import tabserve.service` (the server) need not load training.
    if name == "export":
        from tabserve.training.export import export

        return export
    if name == "ExportError":
        from tabserve.training.errors import ExportError

        return ExportError
    raise AttributeError(f"module 'tabserve' has no attribute {name!r}")
