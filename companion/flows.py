r"""Normalizing flows: densities through invertible maps, RealNVP coupling layers.

A flow is a bijection :math:`f` from data :math:`x` to a latent :math:`z = f(x)`
with a simple base density :math:`p_Z`. The change-of-variables formula gives
the exact density of the data,

.. math:: \log p_X(x) = \log p_Z(f(x)) + \log \left|\det \frac{\partial f}{\partial x}\right| ,

and sampling runs the map backwards, :math:`x = f^{-1}(z)` with :math:`z \sim p_Z`.

Every bijection is an ``nn.Module`` with the nflows/zuko convention:
``forward(x) -> (z, log_det)`` goes from data to latent, ``inverse(z) -> (x,
log_det)`` back, ``log_det: (b,)`` is the log-absolute-determinant of the
Jacobian of the map applied (the two of a round trip cancel); inputs are ``(b, d)``.
Elementwise maps (:class:`ElementwiseAffine`, :class:`Logit`, :class:`ActNorm`),
RealNVP's :class:`AffineCoupling` (Dinh et al. 2017), :class:`Permutation` and
:class:`Reverse` compose into a :class:`Flow` on a :class:`StandardNormal` base;
:func:`realnvp` builds one from a :class:`RealNVPConfig`. :func:`dequantize` and
:func:`two_moons_log_prob` serve the experiments: discrete images, and a 2-D
density whose true value is known.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from companion.utils import check_shape

__all__ = ["ElementwiseAffine", "Logit", "AffineCoupling", "Reverse", "Permutation",
           "ActNorm", "StandardNormal", "Flow", "RealNVPConfig", "realnvp",
           "dequantize", "two_moons_log_prob"]


def _check_input(x: torch.Tensor, dim: int, name: str = "x") -> None:
    check_shape(name, x, "b d", d=dim)
    if not x.is_floating_point():
        raise ValueError(f"expected {name} to be a floating-point tensor, got {x.dtype}")


class ElementwiseAffine(nn.Module):
    r"""The map :math:`z = (x - \mu) e^{-s}` on every coordinate; :math:`\log|\det| = -\sum_i s_i`.

    ``shift`` :math:`\mu` and ``log_scale`` :math:`s` are ``(d,)`` parameters
    (``trainable=False`` makes them fixed buffers, e.g. to rescale data).

    Example:
        >>> t = ElementwiseAffine(2, shift=torch.tensor([1.0, 0.0]), log_scale=torch.tensor([0.0, math.log(2)]))
        >>> z, log_det = t(torch.tensor([[3.0, 4.0]]))
        >>> z.tolist(), round(log_det.item(), 4)
        ([[2.0, 2.0]], -0.6931)
    """

    def __init__(self, dim: int, *, shift: torch.Tensor | None = None,
                 log_scale: torch.Tensor | None = None, trainable: bool = True) -> None:
        super().__init__()
        shift = torch.zeros(dim) if shift is None else torch.as_tensor(shift, dtype=torch.float32)
        log_scale = torch.zeros(dim) if log_scale is None else torch.as_tensor(log_scale, dtype=torch.float32)
        check_shape("shift", shift, "d", d=dim)
        check_shape("log_scale", log_scale, "d", d=dim)
        self.dim = dim
        if trainable:
            self.shift, self.log_scale = nn.Parameter(shift.clone()), nn.Parameter(log_scale.clone())
        else:
            self.register_buffer("shift", shift.clone())
            self.register_buffer("log_scale", log_scale.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.dim)
        z = (x - self.shift) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(z, self.dim, "z")
        x = z * torch.exp(self.log_scale) + self.shift
        return x, self.log_scale.sum().expand(z.shape[0])


class Logit(nn.Module):
    r"""The logit :math:`z = \log y - \log(1 - y)` of :math:`y = \alpha + (1 - 2\alpha)\,x`, for ``x`` in (0, 1).

    :math:`\frac{dz}{dx} = \frac{1 - 2\alpha}{y(1 - y)}`, so
    :math:`\log|\det| = \sum_i [\log(1 - 2\alpha) - \log y_i - \log(1 - y_i)]`.
    The inverse is the sigmoid. ``alpha`` keeps the ends of the unit interval
    away from :math:`\pm\infty` (RealNVP uses 0.05 for images).

    Example:
        >>> z, log_det = Logit(1)(torch.tensor([[0.5]]))
        >>> z.item(), round(log_det.item(), 4)   # slope 4 at the centre
        (0.0, 1.3863)
    """

    def __init__(self, dim: int, alpha: float = 0.0) -> None:
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {alpha}")
        self.dim, self.alpha = dim, alpha

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.dim)
        y = self.alpha + (1 - 2 * self.alpha) * x
        z = torch.log(y) - torch.log1p(-y)
        log_det = (math.log(1 - 2 * self.alpha) - torch.log(y) - torch.log1p(-y)).sum(1)
        return z, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(z, self.dim, "z")
        y = torch.sigmoid(z)
        x = (y - self.alpha) / (1 - 2 * self.alpha)
        # log y(1-y) = -softplus(-z) - softplus(z), computed without rounding y to 0 or 1
        log_det = (-nn.functional.softplus(-z) - nn.functional.softplus(z)
                   - math.log(1 - 2 * self.alpha)).sum(1)
        return x, log_det


class AffineCoupling(nn.Module):
    r"""RealNVP's affine coupling layer (Dinh et al. 2017).

    With a binary ``mask`` :math:`m` (1 = passed through unchanged),

    .. math::
        z = m \odot x + (1 - m) \odot \big(x \odot e^{s(m \odot x)}
            + t(m \odot x)\big), \qquad
        \log|\det| = \sum_i (1 - m_i)\, s_i(m \odot x) .

    The Jacobian is triangular (after reordering): the changed coordinates
    depend on themselves only through the factor :math:`e^{s}`, so the
    determinant is the product of the diagonal. :math:`s` and :math:`t` come
    from one MLP with ``hidden`` units; the scale is soft-clamped,
    :math:`s = c \tanh(\tilde s / c)`, so that :math:`e^{s}` stays within
    :math:`e^{\pm c}`. The last layer starts at zero: a new layer is the
    identity.

    Example:
        >>> layer = AffineCoupling(2, torch.tensor([1.0, 0.0]), hidden=8)
        >>> x = torch.randn(5, 2)
        >>> z, log_det = layer(x)
        >>> torch.equal(z, x), log_det.shape   # identity at initialisation
        (True, torch.Size([5]))
    """

    def __init__(self, dim: int, mask: torch.Tensor, hidden: int = 64, *,
                 depth: int = 2, clamp: float = 3.0) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        check_shape("mask", mask, "d", d=dim)
        if not torch.all((mask == 0) | (mask == 1)) or mask.sum() in (0, dim):
            raise ValueError("mask must hold 0s and 1s and both values "
                             "(some coordinates pass, some change)")
        if hidden < 1 or depth < 1 or clamp <= 0:
            raise ValueError(f"need hidden >= 1, depth >= 1, clamp > 0; "
                             f"got {hidden}, {depth}, {clamp}")
        self.dim, self.clamp = dim, clamp
        self.register_buffer("mask", mask)
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        last = nn.Linear(width, 2 * dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def _scale_shift(self, x_pass: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(x_pass).chunk(2, dim=1)
        s = self.clamp * torch.tanh(s / self.clamp)   # soft clamp: |s| < c
        return s * (1 - self.mask), t * (1 - self.mask)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.dim)
        s, t = self._scale_shift(x * self.mask)
        z = x * torch.exp(s) + t              # where mask = 1: s = t = 0
        return z, s.sum(1)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(z, self.dim, "z")
        s, t = self._scale_shift(z * self.mask)  # z = x where mask = 1
        x = (z - t) * torch.exp(-s)
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
        _check_input(x, self.dim)
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(z, self.dim, "z")
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


class Reverse(Permutation):
    """Reverse the order of the coordinates (the permutation RealNVP and Glow started from)."""

    def __init__(self, dim: int) -> None:
        super().__init__(torch.arange(dim - 1, -1, -1))


class ActNorm(ElementwiseAffine):
    r""":class:`ElementwiseAffine` initialised from data: the ActNorm of Glow (Kingma & Dhariwal 2018).

    On the first call in training mode, :math:`\mu` and :math:`s` are set from
    the batch so that its outputs have zero mean and unit variance; after that
    they are ordinary parameters. Unlike batch normalisation, an example's
    output never depends on the rest of its batch.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.dim)
        if self.training and not self.initialized:
            if x.shape[0] < 2:
                raise ValueError("ActNorm needs a first batch of at least 2 examples to initialise")
            with torch.no_grad():
                self.shift.copy_(x.mean(0))
                self.log_scale.copy_(x.std(0).clamp(min=1e-6).log())
                self.initialized.fill_(True)
        return super().forward(x)


class StandardNormal(nn.Module):
    r"""The base density :math:`\mathcal{N}(0, I_d)`: ``log_prob(z: (b, d)) -> (b,)`` and ``sample``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("_device_anchor", torch.zeros(()))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        _check_input(z, self.dim, "z")
        return -0.5 * (z ** 2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        a = self._device_anchor
        return torch.randn(n, self.dim, generator=generator, device=a.device, dtype=a.dtype)


class Flow(nn.Module):
    r"""Bijections :math:`f = f_K \circ \dots \circ f_1` on a base density.

    ``forward(x) -> (z, log_det)`` applies :math:`f_1` first and adds the
    log-dets; ``inverse`` runs the stack backwards. :meth:`log_prob` is the
    change of variables,
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
        self.transforms = nn.ModuleList(transforms)
        self.base = base
        self.dim = base.dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(x, self.dim)
        log_det = x.new_zeros(x.shape[0])
        for transform in self.transforms:
            x, ld = transform(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_input(z, self.dim, "z")
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
    def sample(self, n: int, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``(n, d)``: :math:`x = f^{-1}(z)`, :math:`z \\sim p_Z`."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return self.inverse(self.base.sample(n, generator=generator))[0]


@dataclass(frozen=True)
class RealNVPConfig:
    """A RealNVP: ``n_layers`` coupling layers with alternating masks, each optionally after an ActNorm."""

    dim: int = 2
    n_layers: int = 8
    hidden: int = 64
    depth: int = 2
    clamp: float = 3.0
    actnorm: bool = True
    permute_seed: int | None = None   # None: alternate even/odd masks; int: random permutations


def realnvp(config: RealNVPConfig, *, preprocess: list[nn.Module] | None = None) -> Flow:
    """Build a RealNVP :class:`Flow` from ``config``; ``preprocess`` bijections run first.

    Example:
        >>> flow = realnvp(RealNVPConfig(dim=2, n_layers=4, hidden=16))
        >>> flow.log_prob(torch.randn(3, 2)).shape
        torch.Size([3])
    """
    d, seed = config.dim, config.permute_seed
    if d < 2:
        raise ValueError(f"coupling layers need dim >= 2, got {d}")
    parity = (torch.arange(d) % 2).float()
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    transforms: list[nn.Module] = list(preprocess or [])
    for k in range(config.n_layers):
        if config.actnorm:
            transforms.append(ActNorm(d))
        if g is not None and k > 0:
            transforms.append(Permutation(torch.randperm(d, generator=g)))
        mask = parity if k % 2 == 0 else 1 - parity
        transforms.append(AffineCoupling(d, mask, config.hidden, depth=config.depth, clamp=config.clamp))
    return Flow(transforms, StandardNormal(d))


def dequantize(levels: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Uniform dequantisation: integer levels ``(b, ...)`` plus :math:`u \sim U[0, 1)` per entry.

    Each integer :math:`k` becomes a point of the unit bin :math:`[k, k + 1)`;
    a continuous density fitted to these points gives a lower bound on the
    discrete likelihood (Theis et al. 2016).

    Example:
        >>> y = dequantize(torch.tensor([[0, 3]]), generator=torch.Generator().manual_seed(0))
        >>> bool(((y >= torch.tensor([0, 3])) & (y < torch.tensor([1, 4]))).all())
        True
    """
    if levels.is_floating_point() or levels.is_complex():
        raise ValueError(f"expected integer levels, got {levels.dtype}")
    u = torch.rand(levels.shape, generator=generator, device=levels.device)
    return levels.float() + u


def two_moons_log_prob(x: torch.Tensor, *, noise: float = 0.1, n_theta: int = 256) -> torch.Tensor:
    r"""The true log density of :func:`companion.data.two_moons` at ``x: (b, 2)``, shape ``(b,)``.

    A moon with probability 1/2, an angle :math:`\theta \sim U(0, \pi)`, then
    noise :math:`\mathcal{N}(0, \sigma^2 I)`: :math:`p(x) = \frac{1}{2\pi} \sum_y
    \int_0^\pi \mathcal{N}(x; c_y(\theta), \sigma^2 I)\, d\theta`, integrated by the
    midpoint rule on ``n_theta`` angles (exact once :math:`\pi / n_\theta \ll \sigma`).

    Example:
        >>> x = torch.tensor([[0.0, 1.0], [0.5, 5.0]])   # on the upper moon, far away
        >>> (two_moons_log_prob(x) > torch.tensor([-1.0, -100.0])).tolist()
        [True, False]
    """
    check_shape("x", x, "b 2")
    if noise <= 0 or n_theta < 1:
        raise ValueError(f"need noise > 0 and n_theta >= 1, got {noise}, {n_theta}")
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * math.pi / n_theta
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    centres = torch.cat([upper, lower])                            # (2 n_theta, 2)
    out = []
    for chunk in x.double().split(4096):                           # bounded memory: (4096, 2 n_theta)
        sq_dist = ((chunk[:, None, :] - centres[None]) ** 2).sum(-1)
        out.append(torch.logsumexp(-sq_dist / (2 * noise ** 2), dim=1))
    return torch.cat(out) - math.log(2 * math.pi * noise ** 2) - math.log(2 * n_theta)
