"""The streaming dataflow generator (FINN-style): one MVAU per layer, width converters and FIFOs between them,
AXI-Stream in and out.

Public API::

    program = compile_dataflow(model_or_layers, fold=..., target_cycles=...)   # -> DataflowProgram
    top = DataflowTop(program.config)                                          # Amaranth component
    program.load_rows, program.pack_inputs(codes), program.unpack_outputs(beats),
    program.predicted_ii_cycles, program.predicted_latency_cycles, program.fold_report()
"""
from .compile import DataflowProgram, compile_dataflow
from .config import CodeType, DataflowConfig, LayerConfig, LayerFold
from .folding import auto_fold, parse_fold
from .top import DataflowTop

__all__ = ["CodeType", "DataflowConfig", "DataflowProgram", "DataflowTop", "LayerConfig", "LayerFold", "auto_fold",
           "compile_dataflow", "parse_fold"]
