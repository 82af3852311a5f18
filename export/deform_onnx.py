"""The project's own translation of torchvision::deform_conv2d to ONNX DeformConv (opset 19).

Owned here so that the export works whatever the installed onnxscript or torchvision carries, for
both torch.onnx exporters: the dynamo exporter takes `TRANSLATION_TABLE` as its
custom_translation_table; the TorchScript exporter uses the symbolic that `register_torchscript`
registers.
"""
from __future__ import annotations

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.deform_conv2d, translated below)

DEFORM_OPSET = 19  # DeformConv entered the standard ONNX domain in opset 19
_registered = False


def _deform_conv2d_onnx(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                        dilation_h, dilation_w, groups, offset_groups, use_mask):
    from onnxscript import opset19 as op

    attributes = dict(
        dilations=[int(dilation_h), int(dilation_w)],
        group=int(groups),
        offset_group=int(offset_groups),
        pads=[int(pad_h), int(pad_w), int(pad_h), int(pad_w)],
        strides=[int(stride_h), int(stride_w)],
    )
    if use_mask:
        return op.DeformConv(input, weight, offset, bias, mask, **attributes)
    return op.DeformConv(input, weight, offset, bias, **attributes)


#: custom_translation_table for torch.onnx.export(..., dynamo=True)
TRANSLATION_TABLE = {torch.ops.torchvision.deform_conv2d.default: _deform_conv2d_onnx}


def _deform_conv2d_symbolic(g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                            dilation_h, dilation_w, groups, offset_groups, use_mask):
    from torch.onnx import symbolic_helper

    ints = [symbolic_helper._get_const(v, "i", name) for v, name in (
        (stride_h, "stride_h"), (stride_w, "stride_w"), (pad_h, "pad_h"), (pad_w, "pad_w"),
        (dilation_h, "dilation_h"), (dilation_w, "dilation_w"), (groups, "groups"), (offset_groups, "offset_groups"))]
    sh, sw, ph, pw, dh, dw, n_groups, n_offset_groups = ints
    inputs = [input, weight, offset, bias]
    if symbolic_helper._get_const(use_mask, "b", "use_mask"):
        inputs.append(mask)
    return g.op("DeformConv", *inputs, dilations_i=[dh, dw], group_i=n_groups, offset_group_i=n_offset_groups,
                pads_i=[ph, pw, ph, pw], strides_i=[sh, sw])


def register_torchscript() -> None:
    """Register the DeformConv symbolic with the TorchScript exporter (idempotent)."""
    global _registered
    if not _registered:
        torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, DEFORM_OPSET)
        _registered = True
