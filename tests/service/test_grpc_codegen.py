"""The committed gRPC modules are what `make grpc-code` generates from the committed proto."""

from __future__ import annotations

from pathlib import Path

from tools.grpc_codegen import ROOT, generate


def test_regenerating_gives_the_committed_bytes(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert len(written) == 3
    for path in written:
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (ROOT / relative).read_bytes(), f"{relative}: make grpc-code"


def test_the_messages_live_in_their_own_descriptor_pool() -> None:
    """tritonclient.grpc registers the same `inference.*` names in protobuf's default pool."""
    import tritonclient.grpc  # noqa: F401  (registers its messages first)
    from google.protobuf import descriptor_pool

    from tabserve.service.protocol.pb import grpc_predict_v2_pb2 as pb

    assert pb.DESCRIPTOR.pool is not descriptor_pool.Default()
    assert pb.ModelInferRequest.DESCRIPTOR.full_name == "inference.ModelInferRequest"
