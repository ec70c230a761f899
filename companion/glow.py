r"""Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018), a learned replacement for a fixed permutation.

A 1x1 convolution with :math:`c` input and :math:`c` output channels applies one matrix
:math:`W \in \mathbb{R}^{c \times c}` to the channel vector of every pixel of a
:math:`c \times h \times w` feature map. Its Jacobian is block diagonal, one block :math:`W`
per pixel, so

.. math:: \log|\det J| = h\, w\, \log|\det W| \qquad \text{(Glow, Section 3.2)} .

A permutation of the channels is the special case of a permutation matrix (:math:`\log|\det W|
= 0`); a learned :math:`W` lets the flow choose how to mix the coordinates between coupling
layers. Glow's LU form :math:`W = P L (U + \operatorname{diag}(\pm e^{\ell_1}, \dots, \pm e^{\ell_c}))`
(:math:`P` a fixed permutation, :math:`L` unit lower-triangular, :math:`U` strictly upper-triangular,
:math:`\ell_i` the log-magnitudes of the diagonal, whose signs stay fixed) makes :math:`\log|\det W| = \sum_i \ell_i` cost :math:`O(c)` instead of the
:math:`O(c^3)` of a determinant, and keeps :math:`W` invertible for every finite :math:`\ell`.

The module follows :mod:`companion.flows`' convention: it takes flattened maps ``x: (b, c*h*w)``
(channel-major, ``x.reshape(b, c, h, w)``) and returns ``(z, log_det: (b,))``. With ``h = w = 1``
it is a learned invertible linear map of all ``c`` coordinates.
"""
from __future__ import annotations

import torch
from einops import einsum, rearrange
from torch import nn

from companion import checks, rng
from companion.flows import _check_input

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(nn.Module):
    r"""The map :math:`z_{:, i, j} = W x_{:, i, j}` at every pixel; :math:`\log|\det| = h w \log|\det W|`.

    ``channels`` :math:`c`, ``height`` :math:`h`, ``width`` :math:`w`; inputs ``(b, c*h*w)``.
    :math:`W` starts as a random orthogonal matrix (the Q of a QR factorisation of a Gaussian matrix
    drawn from ``generator``; Glow calls it a random rotation), so a new layer preserves volume. ``lu=True`` stores
    :math:`W` in Glow's LU form (log-det a sum); ``lu=False`` stores :math:`W` itself (log-det by
    ``torch.linalg.slogdet``, :math:`O(c^3)`).

    Example:
        >>> conv = InvertibleConv1x1(3, 2, 2, generator=torch.Generator().manual_seed(0))
        >>> z, log_det = conv(torch.randn(5, 12))
        >>> z.shape, bool(log_det.abs().max() < 1e-5)     # a rotation: volume preserved
        (torch.Size([5, 12]), True)
    """

    def __init__(self, channels: int, height: int = 1, width: int = 1, *, lu: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        c = checks.positive_int("channels", channels)
        self.height, self.width = checks.positive_int("height", height), checks.positive_int("width", width)
        if not isinstance(lu, bool):
            raise ValueError(f"lu must be a bool, got {lu!r}")
        self.channels, self.dim, self.lu = c, c * self.height * self.width, lu
        dtype = torch.get_default_dtype()
        q = torch.linalg.qr(rng.randn((c, c), generator=generator, dtype=torch.float64))[0]
        if not lu:
            self.weight = nn.Parameter(q.to(dtype))
            return
        p, lower, upper = torch.linalg.lu(q)                       # q = P L U
        diag = torch.diagonal(upper)
        below = torch.tril_indices(c, c, -1)                        # the c(c-1)/2 free entries of L
        self.register_buffer("p", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(diag).to(dtype))
        self.register_buffer("below", below)
        self.lower = nn.Parameter(lower[below[0], below[1]].to(dtype))
        self.upper = nn.Parameter(upper.T[below[0], below[1]].to(dtype))   # U's strict upper part, by U^T
        self.log_s = nn.Parameter(diag.abs().log().to(dtype))

    def _weight_and_log_det(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`W` ``(c, c)`` and :math:`\\log|\\det W|` (a scalar)."""
        if not self.lu:
            return self.weight, torch.linalg.slogdet(self.weight).logabsdet
        c, (i, j) = self.channels, self.below
        lower = torch.eye(c, dtype=self.lower.dtype, device=self.lower.device).index_put((i, j), self.lower)
        # Lambda = diag(sign_i e^{l_i}) with l_i = log_s[i]; U strictly upper from self.upper
        upper = torch.diag(self.sign_s * self.log_s.exp()).index_put((j, i), self.upper)  # U + Lambda
        return self.p @ lower @ upper, self.log_s.sum()     # W = P L (U + Lambda), log|det W| = sum(l_i)

    def _mix(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        pixels = rearrange(x, "b (c hw) -> b c hw", c=self.channels)
        out = einsum(weight, pixels, "o c, b c hw -> b o hw")         # W at every pixel
        return rearrange(out, "b c hw -> b (c hw)")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        weight, log_det_w = self._weight_and_log_det()
        hw = self.height * self.width
        return self._mix(x, weight), (hw * log_det_w).expand(x.shape[0])   # h w log|det W|

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _check_input(self, z, "z")
        weight, log_det_w = self._weight_and_log_det()
        hw = self.height * self.width
        return self._mix(z, torch.linalg.inv(weight)), (-hw * log_det_w).expand(z.shape[0])
