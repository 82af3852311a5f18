"""Measurement of zoo's models on this machine, run from a checkout (not part of the wheel).

`python -m bench` times every shipped model in zoo's onnxruntime session against PyTorch, torch.compile and
OpenVINO; `python -m bench.train` times training steps; `python -m bench.deform` compares the deformable
convolution's implementations in training; `python -m bench.runtimes` runs every model's self-contained ONNX
file in other runtimes. `zoo.timing` is the torch-free core the others (and export's int8 step) time with.
"""
