"""Serve an ONNX model with onnxruntime inside Triton's python backend (the CPU profile).

The tritonserver in the pytriton wheel has only the python backend, so on a CPU-only machine
every model of the repository is this one file (copied to `<model>/1/model.py` by the build)
plus a config whose parameters say which ONNX file to load:

- `onnx_model`: path to the ONNX file, relative to this file's folder or absolute; `{version}`
  in it is replaced by the version being loaded;
- `intra_op_num_threads` (default 1): onnxruntime threads. Spinning is disabled because the
  cores are shared with Kafka and the workers; spinning threads made batches ~3x slower;
- `pad_values`: JSON {input name: pad value} used to merge requests of different lengths.

The dynamic batcher hands execute() a list of requests that may differ in sequence length
(the CPU config sets allow_ragged_batch). They are padded to the longest, run in ONE
session.run, and split back per request. Failures are per request: a request that cannot be
read gets an error response; if the merged run fails, each request is run alone so that one
bad request (say a token id outside the vocabulary) cannot fail the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

_NUMPY_DTYPES = {
    "TYPE_BOOL": np.bool_,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


class RequestError(ValueError):
    """A request that cannot be served as sent (the client's fault, not the server's)."""


def _error(message: str, invalid_argument: bool) -> Any:
    """A TritonError with the right status code where this python backend supports codes."""
    code_name = "INVALID_ARG" if invalid_argument else "INTERNAL"
    code = getattr(pb_utils.TritonError, code_name, None)
    if code is None:  # older stubs: message only
        return pb_utils.TritonError(message)
    return pb_utils.TritonError(message, code)


def pad_and_concat(arrays: list[np.ndarray], pad_value: int | float) -> np.ndarray:
    """Concatenate request tensors along the batch axis, padding every other axis to the longest."""
    if len(arrays) == 1:
        return arrays[0]
    target = np.max([a.shape for a in arrays], axis=0)
    total = int(sum(a.shape[0] for a in arrays))
    merged = np.full((total, *target[1:]), pad_value, dtype=arrays[0].dtype)
    row = 0
    for a in arrays:
        index = (slice(row, row + a.shape[0]), *(slice(0, n) for n in a.shape[1:]))
        merged[index] = a
        row += a.shape[0]
    return merged


class TritonPythonModel:
    """Triton's python-backend entry point."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.name = config["name"]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if "onnx_model" not in params:
            raise ValueError(f"{self.name}: config parameter 'onnx_model' is missing")
        # `{version}` stands for this version's folder: one config serves every version.
        path = Path(params["onnx_model"].replace("{version}", str(args["model_version"])))
        if not path.is_absolute():
            path = (Path(__file__).resolve().parent / path).resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.name}: ONNX file {path} not found; run `python -m triton_models.build`"
            )
        threads = int(params.get("intra_op_num_threads", "1"))
        pads = json.loads(params.get("pad_values", "{}"))

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.inputs = [
            (t["name"], _NUMPY_DTYPES[t["data_type"]], pads.get(t["name"], 0)) for t in config["input"]
        ]
        # Inputs declared with the same variable dims (input_ids and attention_mask) describe the
        # same tokens: a request must send them with equal shapes, or padding would silently
        # paper over the mismatch when requests are merged.
        self.same_shape: dict[str, str] = {}
        first_of: dict[tuple[int, ...], str] = {}
        for t in config["input"]:
            dims = tuple(int(d) for d in t["dims"])
            if -1 in dims:
                self.same_shape[t["name"]] = first_of.setdefault(dims, t["name"])
        self.outputs = [(t["name"], _NUMPY_DTYPES[t["data_type"]]) for t in config["output"]]
        for tensor in config["output"]:
            if any(int(d) < 0 for d in tensor["dims"]):
                # Padding would leak into a variable-length output; splitting rows back is then wrong.
                raise ValueError(f"{self.name}: output {tensor['name']} has a variable dim; not supported")
        session_inputs = {i.name for i in self.session.get_inputs()}
        session_outputs = {o.name for o in self.session.get_outputs()}
        wanted_in = {name for name, _, _ in self.inputs}
        wanted_out = {name for name, _ in self.outputs}
        if session_inputs != wanted_in or not wanted_out <= session_outputs:
            raise ValueError(
                f"{self.name}: ONNX tensors {sorted(session_inputs)} -> {sorted(session_outputs)} "
                f"do not match the config {sorted(wanted_in)} -> {sorted(wanted_out)}"
            )
        self.output_names = [name for name, _ in self.outputs]
        # pb_utils.Logger writes into Triton's own log (the stub's stdio is not always kept).
        pb_utils.Logger.log_info(f"{self.name}: loaded {path} with {threads} intra-op thread(s)")

    def _read(self, request: Any) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        batch = None
        for name, dtype, _ in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"{self.name}: input {name} is missing")
            array = tensor.as_numpy()
            if array.dtype != dtype:
                raise RequestError(
                    f"{self.name}: input {name} has dtype {array.dtype}, expected {np.dtype(dtype)}"
                )
            if array.ndim < 2 or array.shape[0] == 0 or 0 in array.shape[1:]:
                raise RequestError(f"{self.name}: input {name} has unusable shape {list(array.shape)}")
            if batch is not None and array.shape[0] != batch:
                raise RequestError(f"{self.name}: inputs disagree on the batch size")
            batch = array.shape[0]
            arrays[name] = array
        for name, leader in self.same_shape.items():
            if arrays[name].shape != arrays[leader].shape:
                raise RequestError(
                    f"{self.name}: {name} has shape {list(arrays[name].shape)} but {leader} "
                    f"{list(arrays[leader].shape)}; they must match"
                )
        return arrays

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results: list[np.ndarray] = self.session.run(self.output_names, feeds)
        return results

    def _respond(self, results: list[np.ndarray], start: int, stop: int) -> Any:
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(out[start:stop].astype(dtype, copy=False)))
            for (name, dtype), out in zip(self.outputs, results, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _run_alone(self, arrays: dict[str, np.ndarray]) -> Any:
        try:
            results = self._run(arrays)
        except (InvalidArgument, ValueError) as exc:
            return pb_utils.InferenceResponse(error=_error(f"{self.name}: {exc}", invalid_argument=True))
        except Exception as exc:  # onnxruntime raises several unrelated types; report, never crash
            return pb_utils.InferenceResponse(error=_error(f"{self.name}: {exc}", invalid_argument=False))
        return self._respond(results, 0, next(iter(arrays.values())).shape[0])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        good: list[tuple[int, dict[str, np.ndarray]]] = []
        for index, request in enumerate(requests):
            try:
                good.append((index, self._read(request)))
            except RequestError as exc:
                responses[index] = pb_utils.InferenceResponse(error=_error(str(exc), invalid_argument=True))
        if len(good) == 1:
            index, arrays = good[0]
            responses[index] = self._run_alone(arrays)
        elif good:
            feeds = {
                name: pad_and_concat([arrays[name] for _, arrays in good], pad)
                for name, _, pad in self.inputs
            }
            try:
                results = self._run(feeds)
            except Exception:
                pb_utils.Logger.log_warn(
                    f"{self.name}: merged batch of {len(good)} requests failed; running them one by one"
                )
                for index, arrays in good:
                    responses[index] = self._run_alone(arrays)
            else:
                row = 0
                for index, arrays in good:
                    rows = next(iter(arrays.values())).shape[0]
                    responses[index] = self._respond(results, row, row + rows)
                    row += rows
        return responses

    def finalize(self) -> None:
        self.session = None
