"""Scanning model files for code execution without ever loading them.

``findings`` holds the result types; ``scanners`` the one Scanner interface, format
detection and the scan of one file; ``catalog`` the scanners modelshield ships and the scan
of a whole model directory with them; the other modules each read one family of formats
(pickle opcodes, archives, NumPy, Keras/TensorFlow, safetensors/ONNX/GGUF headers) as bytes.
Nothing here unpickles, imports or executes what it reads.
"""
