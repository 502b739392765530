"""Errors the artifact package raises; each message names what was wrong and where."""


class ArtifactError(Exception):
    """An artifact that cannot be written or trusted (missing, corrupt, tampered, incompatible)."""


class VersionExistsError(ArtifactError):
    """An export would overwrite a version that already exists."""
