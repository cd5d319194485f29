"""ONNX Runtime backend: CPU provider (CUDA provider where installed), tuned session options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort

from biomarker_service.onnx_format import INPUT_NAME, read_onnx_info

GraphOptimization = Literal["disable", "basic", "extended", "all"]
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class OnnxOptions:
    """Session settings; the defaults suit a dedicated CPU host."""

    device: str = "auto"
    """"auto" (CUDA provider when installed, else CPU), "cpu" or "cuda[:N]"."""
    intra_op_threads: int = 0
    """Threads inside one operator; 0 lets ONNX Runtime use one per physical core."""
    inter_op_threads: int = 1
    """Threads across independent operators; this graph is a chain, so 1."""
    graph_optimization: GraphOptimization = "all"
    """Graph fusion level ("all" adds layout transforms on CPU)."""


def _providers(device: str) -> tuple[list[str | tuple[str, dict[str, str]]], str]:
    available = ort.get_available_providers()
    want_cuda = device.startswith("cuda") or (
        device == "auto" and "CUDAExecutionProvider" in available
    )
    if want_cuda:
        if "CUDAExecutionProvider" not in available:
            raise ValueError("device cuda asked for, but onnxruntime has no CUDA provider here")
        index = device.partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], (
            f"cuda:{index}"
        )
    return ["CPUExecutionProvider"], "cpu"


class OnnxBackend:
    """Runs an exported biomarker model with an ``onnxruntime.InferenceSession``."""

    def __init__(self, model: bytes | onnx.ModelProto, options: OnnxOptions | None = None) -> None:
        """Build the session.

        Args:
            model: the ONNX model (bytes of an ``.onnx`` file, or a loaded proto).
            options: providers, threads and graph optimisation.
        """
        options = options or OnnxOptions()
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load_from_string(model)
        self.info, self.quantization = read_onnx_info(proto)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = _LEVELS[options.graph_optimization]
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers, self.device = _providers(options.device)
        self._session = ort.InferenceSession(
            proto.SerializeToString(), sess_options=session_options, providers=providers
        )
        self.precision = "fp32" if self.quantization == "none" else f"int8-{self.quantization}"
        self.name = f"onnx-{self.device.partition(':')[0]}-{self.precision}"
        self.version_suffix = "" if self.quantization == "none" else f"+int8-{self.quantization}"

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, outputs)`` float32 for clips ``(N, T, H, W)`` uint8."""
        feed = {INPUT_NAME: np.ascontiguousarray(clips, dtype=np.uint8)}
        logits = np.asarray(self._session.run(None, feed)[0], dtype=np.float32)
        # tanh form of the sigmoid: no overflow warning for large negative logits
        result: np.ndarray = (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
        return result

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory with it)."""
        del self._session
