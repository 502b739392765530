"""gRPC settings (`TABSERVE_GRPC_*`): the Open Inference Protocol over gRPC (service/grpc/)."""

from __future__ import annotations

from pydantic import Field

from tabserve.service.core.feature_settings import FeatureSettings, feature_config


class GrpcSettings(FeatureSettings):
    """Where the gRPC server listens and how large a message it takes."""

    model_config = feature_config("TABSERVE_GRPC_")

    port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description=(
            "TCP port of the gRPC server (`inference.GRPCInferenceService`, health and "
            "reflection), on the HTTP server's host; 8081 as KServe. 0 turns gRPC off. "
            "Every worker process serves it (SO_REUSEPORT)."
        ),
    )
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description=(
            "Largest gRPC request or response message, in bytes; a larger request gets "
            "RESOURCE_EXHAUSTED (the HTTP side's limit is TABSERVE_MAX_BODY_BYTES)."
        ),
    )
