"""ONNX export of a Darknet network: opset 17, a dynamic batch axis, the spatial size fixed.

PyTorch's TorchScript exporter (``dynamo=False``) is used: it needs only the ``onnx`` package
(for the check), where the torch.export-based one also needs ``onnxscript``. The exported graph
computes what ``Darknet.forward`` computes in float32: one output per [yolo]/[region] head in
Darknet's ``l.output`` layout, or the last layer's output for a classifier.
"""
from __future__ import annotations

import io
import logging
import warnings

import torch

from .atomic import atomic_write
from .errors import DarknetError

log = logging.getLogger(__name__)

OPSET = 17
INPUT = "input"


class ExportError(DarknetError):
    """A network (or one of its layers) that cannot be written as ONNX."""


def output_names(net) -> list[str]:
    """``output0``, ``output1``, ... one per tensor ``net(x)`` returns, in that order."""
    return [f"output{i}" for i in range(len(net.outputs))]


def _export(module, inputs, f, input_names, names, opset, axes=None) -> None:
    """The TorchScript exporter with every axis 0 named ``batch`` (dynamic) unless ``axes`` says."""
    axes = axes or {name: {0: "batch"} for name in (*input_names, *names)}
    with warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; the tracer warns that Python
        # arithmetic on the spatial size is frozen, which is intended: only the batch varies.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # Grad mode keeps the network on its plain PyTorch operators: the no-grad inference path
        # uses prepacked oneDNN kernels and in-place activations that ONNX has no form for.
        with torch.enable_grad():
            torch.onnx.export(module, inputs, f, opset_version=opset, dynamo=False,
                              input_names=list(input_names), output_names=list(names), dynamic_axes=axes)


class _OneLayer(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, *xs):
        return self.layer(*xs)


def _failing_layer(net, opset):
    """(index, reason) of the first layer that cannot be exported on its own, or None."""
    for i, (layer, sources) in enumerate(zip(net.layers, net.sources)):
        shapes = [net.net_input_shape if j < 0 else net.specs[j].out for j in sources]
        xs = tuple(torch.rand(1, s.c, s.h, s.w) for s in shapes)
        try:
            _export(_OneLayer(layer), xs, io.BytesIO(), [f"x{k}" for k in range(len(xs))], ["y"], opset)
        except Exception as e:  # noqa: BLE001 -- any exporter failure names this layer
            return i, _first_line(e)
    return None


def _first_line(error: Exception) -> str:
    """The exporter appends the whole TorchScript graph to its messages; keep the headline."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def export_onnx(net, path, *, opset: int = OPSET, decode: bool = False, letterbox: bool | None = None,
                thresh: float = 0.25, nms: float | None = None) -> list[str]:
    """Write ``net`` (a ``Darknet``, on the CPU) to ``path`` as ONNX and check the file with
    ``onnx.checker``. The input is ``input`` (batch, channels, height, width) at the network's
    size; returns the output names. A layer the exporter cannot express is named in the error.
    ``decode``: the graph also decodes the boxes (a second input ``image_size``, outputs
    ``boxes``, ``objectness``, ``scores``; with ``nms`` an IoU threshold, ``selected`` from
    ``NonMaxSuppression``): :mod:`darknet_py.export_decode`; ``letterbox`` as in ``detect``."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'darknet-torch[onnx]'") from None
    net.eval()
    shape = net.net_input_shape
    x = torch.rand(1, shape.c, shape.h, shape.w)
    names, module, inputs, input_names, axes = output_names(net), net, (x,), [INPUT], None
    if decode:
        from .detect import uses_letterbox
        from .export_decode import DECODED_OUTPUTS, SELECTED, DecodedDetector
        module = DecodedDetector(net, uses_letterbox(net, letterbox), thresh, nms).eval()
        inputs, input_names = (x, torch.tensor([[shape.w * 1.5, float(shape.h)]])), [INPUT, "image_size"]
        names = list(DECODED_OUTPUTS) + ([SELECTED] if nms is not None else [])
        axes = {name: {0: "batch"} for name in (*input_names, *DECODED_OUTPUTS)}
        axes[SELECTED] = {0: "selected"}
    buffer = io.BytesIO()
    try:
        _export(module, inputs, buffer, input_names, names, opset, axes)
    except Exception as e:  # noqa: BLE001 -- the exporter raises many types; find the layer
        blamed = _failing_layer(net, opset)
        if blamed is None:
            raise ExportError(f"{net.cfg_file}: ONNX export failed: {_first_line(e)}") from e
        i, reason = blamed
        raise ExportError(f"layer {i} ({net.describe(i)}) cannot be exported to ONNX opset {opset}: "
                          f"{reason}") from e
    model = onnx.load_model_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{net.cfg_file}: the exported graph does not pass onnx.checker: {e}") from e
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    log.info("%s: %d nodes, outputs %s", path, len(model.graph.node), ", ".join(names))
    return names
