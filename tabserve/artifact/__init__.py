"""The model artifact format: manifest, model file, models-directory layout.

Training writes artifacts and the service reads them; both import this package and
it imports neither, so the format has one home and the two never depend on each other.
"""

from tabserve.artifact.errors import ArtifactError, VersionExistsError
from tabserve.artifact.manifest import Feature, Manifest
from tabserve.artifact.store import LoadedArtifact, load_artifact, read_manifest, save_artifact

__all__ = [
    "ArtifactError",
    "Feature",
    "LoadedArtifact",
    "Manifest",
    "VersionExistsError",
    "load_artifact",
    "read_manifest",
    "save_artifact",
]
