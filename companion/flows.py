r"""Normalizing flows: exact densities through invertible maps, and the bijections they are built from.

A flow maps data :math:`x` to a latent :math:`z = f(x)` with a simple density :math:`p_Z`:
:math:`\log p_X(x) = \log p_Z(f(x)) + \log |\det \partial f / \partial x|` (change of variables),
and samples :math:`x = f^{-1}(z)`, :math:`z \sim p_Z`. Every bijection follows the nflows/zuko
convention: ``forward(x: (b, d)) -> (z, log_det: (b,))`` from data to latent, ``inverse(z) ->
(x, log_det)`` back (the log-dets of a round trip cancel); inputs are floats on the module's
device, float64 is cast to its dtype. :class:`ElementwiseAffine`, :class:`Logit`, :class:`ActNorm`,
RealNVP's :class:`AffineCoupling` (Dinh et al. 2017) and :class:`Permutation` compose into a
:class:`Flow` on a :class:`StandardNormal` base; :mod:`companion.realnvp` builds the RealNVP
model from them, with its config and the family's protocol verbs.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from companion import checks, rng
from companion.utils import check_shape, mode

__all__ = ["ElementwiseAffine", "Logit", "AffineCoupling", "Permutation", "ActNorm", "StandardNormal", "Flow"]


def _check_input(module: nn.Module, x: object, name: str = "x") -> torch.Tensor:
    """``x: (b, d)``, floats, on ``module``'s device and in its dtype - or a clear ``ValueError``."""
    x = checks.tensor(name, x, "b d", d=module.dim)
    if not x.is_floating_point():
        raise ValueError(f"expected {name} to be a floating-point tensor, got {x.dtype}"
                         " (integer grey levels? dequantize them first)")
    return checks.same_device(name, x, module).to(checks.model_dtype(module, default=x.dtype))


class ElementwiseAffine(nn.Module):
    r"""The map :math:`z = (x - \mu) e^{-s}` on every coordinate; :math:`\log|\det| = -\sum_i s_i`.

    ``shift`` :math:`\mu` and ``log_scale`` :math:`s` are ``(d,)`` parameters (``trainable=False``: fixed buffers).

    Example:
        >>> t = ElementwiseAffine(2, shift=torch.tensor([1.0, 0.0]), log_scale=torch.tensor([0.0, math.log(2)]))
        >>> z, log_det = t(torch.tensor([[3.0, 4.0]]))
        >>> z.tolist(), round(log_det.item(), 4)
        ([[2.0, 2.0]], -0.6931)
    """

    def __init__(self, dim: int, *, shift: torch.Tensor | None = None,
                 log_scale: torch.Tensor | None = None, trainable: bool = True) -> None:
        super().__init__()
        self.dim = checks.positive_int("dim", dim)
        shift, log_scale = (torch.zeros(dim) if v is None else torch.as_tensor(v, dtype=torch.get_default_dtype())
                            for v in (shift, log_scale))
        check_shape("shift", shift, "d", d=dim), check_shape("log_scale", log_scale, "d", d=dim)
        if trainable:
            self.shift, self.log_scale = nn.Parameter(shift.clone()), nn.Parameter(log_scale.clone())
        else:
            self.register_buffer("shift", shift.clone())
            self.register_buffer("log_scale", log_scale.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        z = (x - self.shift) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _check_input(self, z, "z")
        x = z * torch.exp(self.log_scale) + self.shift
        return x, self.log_scale.sum().expand(z.shape[0])


class Logit(nn.Module):
    r"""The logit :math:`z = \log y - \log(1 - y)` of :math:`y = \alpha + (1 - 2\alpha)\,x`.

    :math:`\frac{dz}{dx} = \frac{1 - 2\alpha}{y(1 - y)}`, so
    :math:`\log|\det| = \sum_i [\log(1 - 2\alpha) - \log y_i - \log(1 - y_i)]`.
    The inverse is the sigmoid. The map is defined where :math:`0 < y < 1`: ``x`` in
    (0, 1) for :math:`\alpha = 0`, a little more for :math:`\alpha > 0`, which keeps
    the ends of the unit interval away from :math:`\pm\infty` (RealNVP uses 0.05 for
    images, in the form :math:`\alpha + (1 - \alpha) x`); ``x`` outside raises a ``ValueError`` instead of returning NaN.

    Example:
        >>> z, log_det = Logit(1)(torch.tensor([[0.5]]))
        >>> z.item(), round(log_det.item(), 4)   # slope 4 at the centre
        (0.0, 1.3863)
    """

    def __init__(self, dim: int, alpha: float = 0.0) -> None:
        super().__init__()
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha!r}")
        self.dim, self.alpha = checks.positive_int("dim", dim), float(alpha)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        y = self.alpha + (1 - 2 * self.alpha) * x
        if not bool(((y > 0) & (y < 1)).all()):                     # NaN fails this too
            a = self.alpha
            raise ValueError(f"Logit(alpha={a:g}) is defined for x in ({(0 - a) / (1 - 2 * a):.4g}, "
                             f"{(1 - a) / (1 - 2 * a):.4g}), where alpha + (1 - 2 alpha) x is in (0, 1); "
                             f"got values in [{x.min():.4g}, {x.max():.4g}]")
        z = torch.log(y) - torch.log1p(-y)
        log_det = (math.log(1 - 2 * self.alpha) - torch.log(y) - torch.log1p(-y)).sum(1)
        return z, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _check_input(self, z, "z")
        y = torch.sigmoid(z)
        x = (y - self.alpha) / (1 - 2 * self.alpha)
        # log y(1-y) = -softplus(-z) - softplus(z), computed without rounding y to 0 or 1
        log_det = (-F.softplus(-z) - F.softplus(z) - math.log(1 - 2 * self.alpha)).sum(1)
        return x, log_det


class AffineCoupling(nn.Module):
    r"""RealNVP's affine coupling layer (Dinh et al. 2017).

    With a binary ``mask`` :math:`m` of shape ``(d,)`` (1 = passed through unchanged: the
    chapter's :math:`x_A`; 0 = changed: :math:`x_B`), ``forward(x: (b, d)) -> (z: (b, d),
    log_det: (b,))`` computes

    .. math::
        z = m \odot x + (1 - m) \odot \big(x \odot e^{s(m \odot x)}
            + b(m \odot x)\big), \qquad
        \log|\det| = \sum_i (1 - m_i)\, s_i(m \odot x) .

    The Jacobian is triangular (after reordering): the changed coordinates
    depend on themselves only through the factor :math:`e^{s}`, so the
    determinant is the product of the diagonal. The log-scale :math:`s` and the
    shift :math:`b` (Dinh et al.'s :math:`t`) come from one MLP with ``net_layers``
    hidden layers of ``hidden`` units; the scale is soft-clamped,
    :math:`s = c \tanh(\tilde s / c)`, so that :math:`e^{s}` stays within
    :math:`e^{\pm c}`. The last layer starts at zero: a new layer is the identity.

    Example:
        >>> layer = AffineCoupling(2, torch.tensor([1.0, 0.0]), hidden=8)
        >>> x = torch.randn(5, 2)
        >>> z, log_det = layer(x)
        >>> torch.equal(z, x), log_det.shape   # identity at initialisation
        (True, torch.Size([5]))
    """

    def __init__(self, dim: int, mask: torch.Tensor, hidden: int = 64, *,
                 net_layers: int = 2, clamp: float = 3.0) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.get_default_dtype())
        check_shape("mask", mask, "d", d=dim)
        if not torch.all((mask == 0) | (mask == 1)) or mask.sum() in (0, dim):
            raise ValueError("mask must hold 0s and 1s and both values (some coordinates pass, some change)")
        checks.positive_int("hidden", hidden), checks.positive_int("net_layers", net_layers)
        self.dim, self.clamp = dim, checks.positive("clamp", clamp)
        self.register_buffer("mask", mask)
        layers: list[nn.Module] = []
        width = dim
        for _ in range(net_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        last = nn.Linear(width, 2 * dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def _scale_shift(self, x_pass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, b = self.net(x_pass).chunk(2, dim=1)
        s = self.clamp * torch.tanh(s / self.clamp)   # soft clamp: |s| < c
        return s * (1 - self.mask), b * (1 - self.mask)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        s, b = self._scale_shift(x * self.mask)
        z = x * torch.exp(s) + b              # where mask = 1: s = b = 0
        return z, s.sum(1)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _check_input(self, z, "z")
        s, b = self._scale_shift(z * self.mask)  # z = x where mask = 1
        x = (z - b) * torch.exp(-s)
        return x, -s.sum(1)


class Permutation(nn.Module):
    """Reorder the coordinates: ``z = x[:, perm]``; volume-preserving, ``log_det = 0``.

    Example:
        >>> Permutation(torch.tensor([2, 0, 1]))(torch.tensor([[1.0, 2.0, 3.0]]))[0]
        tensor([[3., 1., 2.]])
    """

    def __init__(self, perm: torch.Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.int64)
        if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(perm.numel())):
            raise ValueError(f"perm must be a permutation of 0..d-1, got {perm.tolist()}")
        self.dim = perm.numel()
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _check_input(self, z, "z")
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


class ActNorm(ElementwiseAffine):
    r""":class:`ElementwiseAffine` initialised from data: the ActNorm of Glow (Kingma & Dhariwal 2018).

    On the first call in training mode, :math:`\mu` and :math:`s` are set from the batch so
    that its outputs have zero mean and unit variance; after that they are ordinary
    parameters. Unlike batch normalisation, an example's output never depends on its batch.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        if self.training and not self.initialized:
            if x.shape[0] < 2:
                raise ValueError("ActNorm needs a first batch of at least 2 examples to initialise")
            with torch.no_grad():
                self.shift.copy_(x.mean(0))
                self.log_scale.copy_(x.std(0).clamp(min=1e-6).log())
                self.initialized.fill_(True)
        return super().forward(x)


class StandardNormal(nn.Module):
    r"""The base density :math:`\mathcal{N}(0, I_d)`: ``log_prob(z: (b, d)) -> (b,)``, ``sample(n) -> (n, d)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = checks.positive_int("dim", dim)
        self.register_buffer("_device_anchor", torch.zeros(()))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        z = _check_input(self, z, "z")
        return -0.5 * (z ** 2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        a = self._device_anchor
        return rng.randn((checks.positive_int("n", n), self.dim), generator=generator, device=a.device, dtype=a.dtype)


class Flow(nn.Module):
    r"""Bijections :math:`f = f_K \circ \dots \circ f_1` on a base density.

    ``forward(x) -> (z, log_det)`` applies :math:`f_1` first and adds the log-dets; ``inverse``
    runs the stack backwards. :meth:`log_prob` is the change of variables,
    :math:`\log p(x) = \log p_Z(f(x)) + \sum_k \log|\det J_{f_k}|`.

    Example:
        >>> scale = ElementwiseAffine(2, log_scale=torch.tensor([0.0, math.log(3.0)]))
        >>> flow = Flow([scale], StandardNormal(2))   # N(0, diag(1, 9))
        >>> x = torch.tensor([[0.0, 0.0]])
        >>> round(flow.log_prob(x).item(), 4), round(-math.log(6 * math.pi), 4)
        (-2.9365, -2.9365)
    """

    def __init__(self, transforms: list[nn.Module], base: nn.Module) -> None:
        super().__init__()
        if not transforms:
            raise ValueError("a flow needs at least one transform")
        self.transforms, self.base, self.dim = nn.ModuleList(transforms), base, base.dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(self, x)
        log_det = x.new_zeros(x.shape[0])
        for transform in self.transforms:
            x, ld = transform(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _check_input(self, z, "z")
        log_det = z.new_zeros(z.shape[0])
        for transform in reversed(self.transforms):
            z, ld = transform.inverse(z)
            log_det = log_det + ld
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)` of ``x: (b, d)``, shape ``(b,)``."""
        z, log_det = self(x)
        return self.base.log_prob(z) + log_det

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``(n, d)``: :math:`x = f^{-1}(z)`, :math:`z \\sim p_Z`, in eval mode (then restored)."""
        with mode(self, training=False):
            return self.inverse(self.base.sample(n, generator=generator))[0]
