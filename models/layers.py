"""Layers shared by the model families."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class GlobalAvgPool(nn.Module):
    """Mean over H and W: B×C×H×W → B×C×1×1.

    A module (rather than an inline `x.mean`) so that tiled inference (inference/tiling.py) can find every
    global statistic of a network and hand each tile the whole image's value.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def conv_gelu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """gelu(conv(x)), exact (erf) GELU. In CPU inference on channels-last maps, one oneDNN call that applies
    the GELU to the convolution's fp32 sums before they are stored: a pass over the largest maps of the
    network saved, and in bf16 one rounding fewer. Training, tracing for export, other layouts and devices
    take the two plain calls."""
    if (x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.jit.is_tracing()
            and torch.backends.mkldnn.is_available() and x.dtype == conv.weight.dtype
            and conv.padding_mode == "zeros" and x.is_contiguous(memory_format=torch.channels_last)):
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, conv.padding, conv.stride,
                                                       conv.dilation, conv.groups, "gelu", [], "none")
    return F.gelu(conv(x))


class DilatedDepthwiseConv2d(nn.Conv2d):
    """Depthwise k×k convolution with dilation and "same" padding (zeros or reflect).

    Parameters and outputs are nn.Conv2d's. Only the CPU backward differs: oneDNN's backward of a dilated
    depthwise convolution is many times slower than the convolution itself (BENCHMARKS.md, "Dilated depthwise
    convolutions"). Both gradients are convolutions that oneDNN runs fast (without dilation its own backward is
    fast too: plain nn.Conv2d serves there):

    - input gradient: the zero-padded output gradient convolved with the flipped kernel (same dilation);
    - weight gradient: each input map convolved with its own output-gradient map as the kernel, stride =
      dilation, then summed over the batch.

    CUDA, inference, and `fast_cpu_backward = False` (the baseline in benchmarks/) use PyTorch's own backward.
    """

    fast_cpu_backward = True

    def __init__(self, dim: int, kernel_size: int, dilation: int = 1, padding_mode: str = "zeros"):
        super().__init__(dim, dim, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation,
                         groups=dim, padding_mode=padding_mode)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not (self.fast_cpu_backward and x.device.type == "cpu" and torch.is_grad_enabled()):
            return super()._conv_forward(x, weight, bias)
        pad = self.padding[1], self.padding[1], self.padding[0], self.padding[0]
        x = F.pad(x, pad, mode="constant" if self.padding_mode == "zeros" else self.padding_mode)
        return _DepthwiseConvWithConvolutionGradients.apply(x, weight, bias, self.dilation)


class _DepthwiseConvWithConvolutionGradients(torch.autograd.Function):
    """Unpadded depthwise convolution whose backward is made of forward convolutions (see above)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, weight, bias, dilation):
        ctx.save_for_backward(x, weight)
        ctx.dilation, ctx.has_bias = dilation, bias is not None
        return F.conv2d(x, weight, bias, dilation=dilation, groups=x.shape[1])

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        (dh, dw), (kh, kw) = ctx.dilation, weight.shape[-2:]
        b, c, h, w = grad_output.shape
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            full = (dw * (kw - 1),) * 2 + (dh * (kh - 1),) * 2
            grad_x = F.conv2d(F.pad(grad_output, full), weight.flip(-2, -1), dilation=ctx.dilation, groups=c)
        if ctx.needs_input_grad[1]:
            per_image = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), grad_output.reshape(b * c, 1, h, w),
                                 stride=ctx.dilation, groups=b * c)
            grad_weight = per_image.view(b, c, 1, kh, kw).sum(0)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None
