"""The names of a model folder's files, and the metadata key that ties a graph to its card: defined once here."""
from __future__ import annotations

CARD_FILE = "card.json"
GRAPH_FILE = "model.onnx"
#: The graph with standard ops that every common runtime implements, where GRAPH_FILE uses one that some lack.
PORTABLE_GRAPH_FILE = "model-portable.onnx"
#: The weights: a safetensors file that PyTorch loads by parameter name and the graphs read as external data.
WEIGHTS_FILE = "model.safetensors"
#: Weights that several models hold alike (a backbone), stored once in a safetensors file that is byte for byte
#: the same in each of their folders; each model.safetensors keeps the rest (`python -m export share`).
SHARED_WEIGHTS_FILE = "backbone.safetensors"
#: How a model folder's weight files end: WEIGHTS_FILE and the shared ones its card lists.
WEIGHTS_SUFFIX = ".safetensors"
#: The deformable models' sub-graph that outputs where the first deformable layer samples (for the demo).
OFFSETS_FILE = "offsets.onnx"
#: ONNX Model Zoo test vectors: input_K.pb and output_K.pb.
TEST_VECTORS = "test_data_set_0"

#: metadata_props key holding the sha256 of the card the graph was exported with (`runtime.card_digest`).
CARD_DIGEST_KEY = "card_sha256"
