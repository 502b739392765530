"""Training: from data to a served artifact; never imports the service.

The artifact format it writes lives in `tabserve.artifact`, which the service reads too.
"""

from tabserve.training.errors import TrainingError

__all__ = ["TrainingError"]
