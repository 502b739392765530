"""Training and the model artifact format; never imports the service."""

from tabserve.training.artifact import LoadedArtifact, load_artifact, read_manifest, save_artifact
from tabserve.training.errors import ArtifactError, TrainingError, VersionExistsError
from tabserve.training.manifest import Feature, Manifest

__all__ = [
    "ArtifactError",
    "Feature",
    "LoadedArtifact",
    "Manifest",
    "TrainingError",
    "VersionExistsError",
    "load_artifact",
    "read_manifest",
    "save_artifact",
]
