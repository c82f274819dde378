"""hwgen: quantized neural networks (ONNX) → parametric hardware (Amaranth → Verilog), simulated bit-exact."""
from .errors import HwgenError, NodeIssue, UnsupportedModelError
from .model import Layer, Model, load

__version__ = "0.1.0"
__all__ = ["HwgenError", "Layer", "Model", "NodeIssue", "UnsupportedModelError", "__version__", "load"]
