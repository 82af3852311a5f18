"""The export's graph clean-up: CastLike of a constant becomes a Cast that onnxruntime can fold."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export.onnx_export import cast_constants_plainly


def test_castlike_of_a_constant_becomes_a_cast_computing_the_same():
    zero = helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64)))
    graph = helper.make_graph(
        [zero, helper.make_node("CastLike", ["zero", "x"], ["zero.f"]),
         helper.make_node("Add", ["x", "zero.f"], ["y"]), helper.make_node("CastLike", ["x", "x"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    cast_constants_plainly(proto)
    # the constant's CastLike is now a Cast to float; a CastLike of a runtime tensor is left alone
    assert [node.op_type for node in proto.graph.node] == ["Constant", "Cast", "Add", "CastLike"]
    assert proto.graph.node[1].attribute[0].i == TensorProto.FLOAT
    x = np.array([1.5, -2.0], np.float32)
    y, z = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(z, x)
