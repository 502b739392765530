"""Compiled inference engines: ONNX Runtime and numpy evaluators behind the `Runtime` protocol."""

from tabserve.service.core.engines.compiled import (
    TOLERANCE,
    CompiledModel,
    CompiledRuntime,
    EngineName,
    compile_model,
    engine_for,
)
from tabserve.service.core.engines.preparation import UnsupportedModelError

__all__ = [
    "TOLERANCE",
    "CompiledModel",
    "CompiledRuntime",
    "EngineName",
    "UnsupportedModelError",
    "compile_model",
    "engine_for",
]
