"""ONNX in, IR out: validation (read.py) and the dialect-aware importer (importer.py)."""
