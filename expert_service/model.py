"""Runs one ONNX expert with onnxruntime, after checking it has the shape its card promises."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from expert_service.artifact_safety import ArtifactPolicy, check_onnx_artifact
from expert_service.probe import ProbeLimits, probe_model
from lus.errors import InvalidInput

PROBABILITIES_OUTPUT = "probabilities"
"""Output name skl2onnx gives class probabilities when ZipMap is turned off."""

LABEL_OUTPUT = "label"
"""Output name skl2onnx gives the predicted label; registration checks the card's class order
against it (``class_order``)."""


_NO_EXTERNAL_DATA_FOLDER = "/nonexistent/lus-expert-models-hold-no-external-data"
"""Where onnxruntime is told external data lives: nowhere (see ``_session_options``)."""


_probe_limits: ProbeLimits | None = None


def configure_probe(limits: ProbeLimits | None) -> None:
    """Probe every new model in a limited child process before loading it here (``probe``);
    None switches the probe off. Process-wide, like ``artifact_safety.configure``: the registry
    stores load experts too, and every load must pass the same probe. The server sets it."""
    global _probe_limits  # noqa: PLW0603 - one setting per process, set at start-up
    _probe_limits = limits


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    # One thread per session: the server runs many small requests in parallel threads, and
    # onnxruntime's own pool would oversubscribe the few CPU cores the tier is given.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; warnings would go to stderr on every load
    # Models come as bytes, so onnxruntime would resolve any external-data path against the
    # working directory. ``check_onnx_artifact`` refuses such models first; this points the
    # resolution at a folder that does not exist, so a model that slipped past still reads
    # nothing from disk.
    options.add_session_config_entry(
        "session.model_external_initializers_file_folder_path", _NO_EXTERNAL_DATA_FOLDER
    )
    return options


class OnnxExpert:
    """An onnxruntime session that maps ``(batch, n_features)`` float32 to class probabilities.

    Loading validates the model: exactly one float input of width ``n_features`` and a float
    output of ``n_classes`` probability columns that sum to one. Bytes are only ever parsed as
    ONNX protobuf, so a pickle or other payload is refused without being executed. Whether
    ``classes`` is the model's own order is checked once, at registration
    (``class_order.check_class_order``). Before onnxruntime sees the bytes they must pass
    ``artifact_safety.check_onnx_artifact``: no external data (which onnxruntime would read from
    the server's disk), allowed operator domains only, within the size limit.

    Args:
        onnx_bytes: A serialized ONNX model, as produced by skl2onnx with ZipMap off.
        n_features: Expected input width.
        classes: The card's labels, in the order of the probability columns.
        policy: Size limit and operator domains; default the process's
            (``artifact_safety.configure``).

    Raises:
        InvalidInput: The bytes are not a safe ONNX model (``check_onnx_artifact``) or not an
            ONNX model of that shape.
    """

    def __init__(
        self,
        onnx_bytes: bytes,
        *,
        n_features: int,
        classes: Sequence[str],
        policy: ArtifactPolicy | None = None,
    ) -> None:
        self.n_features = n_features
        self.classes = tuple(classes)
        self.n_classes = len(self.classes)
        if not onnx_bytes:
            raise InvalidInput("model bytes are empty; expected an ONNX model")
        check_onnx_artifact(onnx_bytes, policy)
        if _probe_limits is not None:
            probe_model(onnx_bytes, n_features, _probe_limits)
        try:
            self._session = ort.InferenceSession(
                onnx_bytes, sess_options=_session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises several unrelated pybind11 types
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise InvalidInput(f"model bytes are not a loadable ONNX model ({reason})") from None
        self._input = self._check_input()
        self._output = self._check_output()
        self._check_probe()

    def _check_input(self) -> str:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise InvalidInput(f"ONNX model has {len(inputs)} inputs; an expert takes exactly 1")
        (spec,) = inputs
        width = spec.shape[-1] if len(spec.shape) == 2 else None
        if spec.type != "tensor(float)" or width != self.n_features:
            raise InvalidInput(
                f"ONNX model input is {spec.type} {spec.shape}; "
                f"an expert takes tensor(float) [N, {self.n_features}]"
            )
        return str(spec.name)

    def _check_output(self) -> str:
        outputs = {o.name: o for o in self._session.get_outputs()}
        candidates = [outputs[PROBABILITIES_OUTPUT]] if PROBABILITIES_OUTPUT in outputs else []
        candidates = candidates or [o for o in outputs.values() if o.type == "tensor(float)"]
        for out in candidates:
            shape = out.shape
            if out.type == "tensor(float)" and len(shape) == 2 and shape[1] == self.n_classes:
                return str(out.name)
        shapes = ", ".join(f"{o.name}: {o.type} {o.shape}" for o in outputs.values())
        raise InvalidInput(
            f"ONNX model has no float output of {self.n_classes} class probabilities "
            f"(outputs: {shapes}); convert it with ZipMap turned off"
        )

    def _check_probe(self) -> None:
        # Run a constant vector through once, so a model that loads but cannot compute (or does
        # not output probabilities) is refused at registration rather than at the first request.
        probe = np.linspace(0.0, 1.0, 4 * self.n_features, dtype=np.float32)
        probe = np.stack([probe[: self.n_features], probe[-self.n_features :], probe[::4] * 0.5])
        try:
            probabilities = self.predict_proba(probe)
        except Exception as err:
            reason = type(err).__name__
            raise InvalidInput(f"ONNX model fails on a test vector ({reason})") from None
        if probabilities.shape != (3, self.n_classes) or not np.all(np.isfinite(probabilities)):
            raise InvalidInput(f"ONNX model returns {probabilities.shape}; expected probabilities")
        if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
            raise InvalidInput("ONNX model outputs do not sum to 1; expected class probabilities")

    def labels_and_probabilities(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The model's own ``label`` output and the probabilities for ``vectors``; None when it
        has no string or integer label output (``class_order`` checks the card against it)."""
        outputs = {o.name: o.type for o in self._session.get_outputs()}
        if outputs.get(LABEL_OUTPUT) not in ("tensor(string)", "tensor(int64)"):
            return None
        batch = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.n_features)
        labels, probabilities = self._session.run(
            [LABEL_OUTPUT, self._output], {self._input: batch}
        )
        return np.asarray(labels).reshape(-1), np.asarray(probabilities, dtype=np.float32)

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(batch, n_classes)``, in the card's class order."""
        batch = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.n_features)
        (probabilities,) = self._session.run([self._output], {self._input: batch})
        return np.asarray(probabilities, dtype=np.float32)
