"""The deformable op: the sampled form and both ONNX forms against torchvision.ops.deform_conv2d."""
from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torchvision.ops import deform_conv2d

from export.onnx_export import op_types, to_onnx
from training.deform import DeformConv2d, deform_conv2d_sampled

# (stride, padding, dilation, groups, offset_groups, use_mask)
CASES = [
    (1, 1, 1, 1, 1, False),
    (1, 1, 1, 1, 1, True),
    (2, 2, 2, 2, 1, False),
    ((2, 1), (0, 2), (1, 2), 1, 3, True),
]


def _inputs(stride, padding, dilation, groups, offset_groups, use_mask, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c_in, c_out, h, w, k = 2, 6, 4, 9, 8, 3
    x = torch.randn(n, c_in, h, w, generator=g, dtype=dtype)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=g, dtype=dtype)
    bias = torch.randn(c_out, generator=g, dtype=dtype)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    out_h = (h + 2 * ph - dh * (k - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (k - 1) - 1) // sw + 1
    # Offsets of several pixels: many taps land outside the image or between pixels.
    offset = 4 * torch.randn(n, 2 * offset_groups * k * k, out_h, out_w, generator=g, dtype=dtype)
    mask = torch.rand(n, offset_groups * k * k, out_h, out_w, generator=g, dtype=dtype) if use_mask else None
    return x, offset, weight, bias, mask, dict(stride=stride, padding=padding, dilation=dilation)


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("case", CASES)
def test_sampled_form_matches_torchvision(case):
    x, offset, weight, bias, mask, kw = _inputs(*case, dtype=torch.float64)
    reference = deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
    ours = deform_conv2d_sampled(x, offset, weight, bias, mask=mask, **kw)
    assert ours.shape == reference.shape
    assert _relative_error(ours.numpy(), reference.numpy()) < 1e-10


def test_sampled_form_gradients_match_torchvision():
    x, offset, weight, bias, mask, kw = _inputs(*CASES[1], dtype=torch.float64)
    grads = []
    for op in (deform_conv2d, deform_conv2d_sampled):
        leaves = [t.clone().requires_grad_() for t in (x, offset, weight, bias, mask)]
        op(leaves[0], leaves[1], leaves[2], leaves[3], mask=leaves[4], **kw).square().sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    for ours, reference in zip(grads[1], grads[0]):
        assert torch.allclose(ours, reference, rtol=1e-7, atol=1e-7)


class _Op(nn.Module):
    """A bare deformable op with offsets and mask as graph inputs."""

    def __init__(self, weight, bias, kw, use_mask, sampled):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.kw, self.use_mask, self.sampled = kw, use_mask, sampled

    def forward(self, x, offset, mask):
        op = deform_conv2d_sampled if self.sampled else deform_conv2d
        return op(x, offset, self.weight, self.bias, mask=mask if self.use_mask else None, **self.kw)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("sampled", [False, True], ids=["DeformConv", "portable"])
@pytest.mark.parametrize("case", CASES)
def test_onnx_forms_match_torchvision_in_onnxruntime(case, sampled, exporter):
    x, offset, weight, bias, mask, kw = _inputs(*case)
    if mask is None:
        mask = torch.zeros(x.shape[0], 1)  # unused; batch-sized like the other inputs
    module = _Op(weight, bias, kw, case[-1], sampled)
    proto = to_onnx(module, (x, offset, mask), ["x", "offset", "mask"], ["y"], exporter=exporter)
    onnx.checker.check_model(proto, full_check=True)
    ops = op_types(proto)
    if sampled:
        assert "DeformConv" not in ops and "GridSample" in ops
    else:
        assert "DeformConv" in ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), (x, offset, mask))}
    ours = session.run(None, feeds)[0]
    reference = deform_conv2d(x, offset, weight, bias, mask=mask if case[-1] else None, **kw).numpy()
    assert _relative_error(ours, reference) <= 1e-5


def test_module_starts_as_a_plain_convolution():
    layer = DeformConv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    plain = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    assert torch.allclose(layer(x), plain, atol=1e-5)


def test_implementations_agree_inside_the_module():
    torch.manual_seed(0)
    layer = DeformConv2d(4, 6, 3, padding=1, implementation="sampled")
    nn.init.normal_(layer.offset.weight, std=0.5)  # non-zero offsets
    x = torch.randn(2, 4, 7, 7)
    sampled = layer(x)
    layer.implementation = "torchvision"
    assert torch.allclose(sampled, layer(x), atol=1e-5)
