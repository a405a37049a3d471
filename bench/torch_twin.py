"""The same network in PyTorch, layer for layer, with our weights: the yardstick.

Only benchmarks and tests use this; PyTorch never computes anything in dcgan_cuda.
"""
from __future__ import annotations

import numpy as np

from dcgan_cuda import nn as our_nn


def torch_twin(net):
    """A torch.nn.Sequential named ``main`` equal to our network, holding a copy of its state."""
    import torch
    from torch import nn

    layers = []
    for layer in net.main:
        if isinstance(layer, our_nn.ConvTranspose2d):
            cin, cout, kh, kw = layer.shape
            layers.append(nn.ConvTranspose2d(cin, cout, (kh, kw), layer.stride, layer.padding,
                                             layer.output_padding, bias=layer.bias is not None))
        elif isinstance(layer, our_nn.Conv2d):
            cout, cin, kh, kw = layer.shape
            layers.append(nn.Conv2d(cin, cout, (kh, kw), layer.stride, layer.padding,
                                    bias=layer.bias is not None))
        elif isinstance(layer, our_nn.Linear):
            out_f, in_f = layer.shape
            layers.append(nn.Linear(in_f, out_f, bias=layer.bias is not None))
        elif isinstance(layer, our_nn.BatchNorm2d):
            layers.append(nn.BatchNorm2d(layer.weight.shape[0], eps=layer.eps, momentum=layer.momentum))
        elif isinstance(layer, our_nn.ReLU):
            layers.append(nn.ReLU())
        elif isinstance(layer, our_nn.LeakyReLU):
            layers.append(nn.LeakyReLU(layer.negative_slope))
        elif isinstance(layer, our_nn.Tanh):
            layers.append(nn.Tanh())
        elif isinstance(layer, our_nn.Flatten):
            layers.append(nn.Flatten())
        elif isinstance(layer, our_nn.Unflatten):
            layers.append(nn.Unflatten(1, layer.shape))
        else:
            raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
    twin = nn.Module()
    twin.main = nn.Sequential(*layers)
    state = {k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin


def torch_forward(twin, x, is_generator):
    """Forward as our models do: G accepts (N, nz, 1, 1) or (N, nz); D returns (N,) logits."""
    if is_generator:
        first = twin.main[0]
        import torch.nn as nn
        x = x.reshape(x.shape[0], -1) if isinstance(first, nn.Linear) else x.reshape(x.shape[0], -1, 1, 1)
        return twin.main(x)
    return twin.main(x).reshape(x.shape[0])
