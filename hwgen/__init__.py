"""hwgen: quantized neural networks (ONNX) → parametric hardware (Amaranth → Verilog), simulated bit-exact."""
__version__ = "0.1.0"

from .errors import HwgenError, NodeIssue, UnsupportedModelError  # noqa: E402
from .design import Design, SimResult, compile, open_design
from .model import Layer, Model, load

__all__ = ["Design", "HwgenError", "Layer", "Model", "NodeIssue", "SimResult", "UnsupportedModelError",
           "__version__", "compile", "load", "open_design"]
