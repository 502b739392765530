"""KServe's own `InferenceRESTClient` (protocol v2) checks health against a real server.

It reads `{"live": ...}` and `{"ready": ...}` from the probe bodies. It runs in its
own interpreter: kserve and tritonclient both register the protobuf package
`inference`, so one process cannot import both.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.service.conftest import ServerProcess

# Found, not imported: importing kserve here would register its `inference` protobuf
# messages in this process, where the gRPC tests' tritonclient.grpc has its own.
if importlib.util.find_spec("kserve") is None:
    pytest.skip("kserve is in the dev extras", allow_module_level=True)

CHECKS = """
import asyncio, json, sys
from kserve import InferenceRESTClient, RESTConfig

async def main(url):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    answers = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "iris": await client.is_model_ready(url, "iris"),
        "broken": await client.is_model_ready(url, "broken"),
        "nosuch": await client.is_model_ready(url, "nosuch"),
    }
    await client.close()
    print(json.dumps(answers))

asyncio.run(main(sys.argv[1]))
"""


def test_kserve_client_reads_liveness_and_readiness(
    models_dir: Path, tmp_path: Path, launch: Callable[..., ServerProcess]
) -> None:
    root = shutil.copytree(models_dir, tmp_path / "models")
    broken = shutil.copytree(models_dir / "diabetes" / "1", root / "broken" / "1")
    (broken / "model.joblib").write_bytes(b"not a model")
    server = launch(root)
    done = subprocess.run(
        [sys.executable, "-c", CHECKS, server.url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "live": True,
        "ready": True,
        "iris": True,
        "broken": False,
        "nosuch": False,
    }
