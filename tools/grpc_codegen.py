"""Generate the gRPC modules from `service/protocol/pb/grpc_predict_v2.proto` (`make grpc-code`).

The generated modules are committed, so installing or running tabserve needs no
protoc; `tests/service/test_grpc_codegen.py` regenerates them and compares the bytes,
so a hand edit or a proto change without regenerating fails the tests.

Where they go: the messages (`grpc_predict_v2_pb2.py` and its `.pyi` for mypy) in
`service/protocol/pb/` (a wire format: `service.protocol`), the servicer base and
client stub (`grpc_predict_v2_pb2_grpc.py`, which imports grpc) in `service/grpc/`.

One change to protoc's output: the messages are registered in a descriptor pool of
their own, not protobuf's default one. tritonclient.grpc and kserve register the same
`inference.*` names in the default pool, and protobuf refuses a second file defining
them, so without this a process importing tabserve and either client would fail.

Run with the dev extras installed (grpcio-tools): `python tools/grpc_codegen.py [OUT]`;
OUT defaults to the repository, and a test passes a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = "tabserve/service/protocol/pb/grpc_predict_v2.proto"
"""The proto's path as protoc sees it from the repository root: through the `tabserve`
link, so the generated imports read `from tabserve.service.protocol.pb import ...`."""
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out: Path) -> list[Path]:
    """Write the three generated modules under `out` (a tree shaped like the repository)."""
    with tempfile.TemporaryDirectory() as tmp:
        messages, services = Path(tmp, "messages"), Path(tmp, "services")
        messages.mkdir()
        services.mkdir()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-I.",
                f"--python_out={messages}",
                f"--pyi_out={messages}",
                f"--grpc_python_out={services}",
                PROTO,
            ],
            cwd=ROOT,
            check=True,
        )
        stem = PROTO.removesuffix(".proto")
        pb2 = Path(messages, f"{stem}_pb2.py").read_text()
        if pb2.count(DEFAULT_POOL) != 1:
            raise RuntimeError(f"protoc's output no longer registers once with {DEFAULT_POOL!r}")
        written = {
            Path("service/protocol/pb/grpc_predict_v2_pb2.py"): pb2.replace(DEFAULT_POOL, OWN_POOL),
            Path("service/protocol/pb/grpc_predict_v2_pb2.pyi"): Path(
                messages, f"{stem}_pb2.pyi"
            ).read_text(),
            Path("service/grpc/grpc_predict_v2_pb2_grpc.py"): Path(
                services, f"{stem}_pb2_grpc.py"
            ).read_text(),
        }
    paths = []
    for relative, text in written.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written_path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT):
        print(written_path)
