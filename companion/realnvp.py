r"""RealNVP (Dinh et al. 2017) as a family of the course: its config, the model, dequantisation, the protocol verbs.

:class:`RealNVP` is a :class:`~companion.flows.Flow` of ``layers`` affine coupling layers with
alternating masks, each after an ActNorm (and a random permutation with ``permute_seed``), on a
standard normal base. It models one of two kinds of data, set by :class:`RealNVPConfig`:

* points ``x: (b, dim)`` (``levels=None``): :func:`loss` and :func:`nll` are the exact
  :math:`-\log p(x)`, :func:`sample` returns points ``(n, dim)``;
* integer grey levels ``x: (b, 1, h, w)`` in ``0 .. levels-1`` with :math:`h w` = ``dim``
  (``levels=17`` for ``digits(as_levels=True)``). The flow is a density on the dequantised
  :math:`\tilde x = x + u \in [0, L)^D`, :math:`u \sim U[0, 1)^D` (:func:`dequantize`); its first two
  maps are fixed, :math:`\tilde x / L` then :class:`~companion.flows.Logit` with ``alpha``, so
  ``log_prob`` is per unit of grey level. Its support is :math:`[0, L)^D` for ``alpha = 0``, and
  the larger :math:`(-m, L + m)^D`, :math:`m = L \alpha / (1 - 2\alpha)`, otherwise: the mass in
  that margin lies in no cell and is lost to the discrete model. :func:`loss` is
  :math:`-\log p(x + u)` with one ``u`` per image; :func:`nll` the ``k``-sample bound
  :func:`dequantized_nll` on the discrete :math:`-\log P(x)`; :func:`sample` the floor of a
  continuous sample, clamped to the levels, ``(n, 1, h, w)`` int64.

All in nats per example. :func:`two_moons_log_prob` is the true density of the 2-D toy data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from companion import checks, rng
from companion.flows import ActNorm, AffineCoupling, ElementwiseAffine, Flow, Logit, Permutation, StandardNormal
from companion.glow import InvertibleConv1x1
from companion.utils import mode

__all__ = ["RealNVPConfig", "RealNVP", "dequantize", "dequantized_nll", "loss", "sample", "nll",
           "two_moons_log_prob"]


@dataclass(frozen=True)
class RealNVPConfig:
    """A RealNVP: ``layers`` coupling layers whose networks have ``net_layers`` hidden layers of ``hidden`` units.

    ``levels=None``: a density on points ``(b, dim)``; ``levels=L``: a model of integer grey
    levels ``0 .. L-1`` in square images ``(b, 1, h, w)``, ``h * w = dim``, through the fixed
    maps :math:`\\tilde x / L` and a logit with margin ``alpha``. ``permute_seed=None`` alternates
    even/odd masks; an int also permutes the coordinates between layers, at random from that seed.
    ``conv1x1=True`` (needs ``permute_seed``) mixes them instead with Glow's learned invertible
    1x1 convolution over all ``dim`` coordinates (:class:`~companion.glow.InvertibleConv1x1` with
    ``h = w = 1``), each starting as a random orthogonal matrix drawn from that seed.
    """

    dim: int = 2
    layers: int = 8
    hidden: int = 64
    net_layers: int = 2
    clamp: float = 3.0
    actnorm: bool = True
    permute_seed: int | None = None
    levels: int | None = None
    alpha: float = 0.05
    conv1x1: bool = False

    def __post_init__(self) -> None:
        for name in ("dim", "layers", "hidden", "net_layers"):
            checks.positive_int(name, getattr(self, name))
        if self.dim < 2:
            raise ValueError(f"coupling layers need dim >= 2, got {self.dim}")
        checks.positive("clamp", self.clamp)
        if not isinstance(self.actnorm, bool):
            raise ValueError(f"actnorm must be a bool, got {self.actnorm!r}")
        if self.permute_seed is not None and (type(self.permute_seed) is not int or self.permute_seed < 0):
            raise ValueError(f"permute_seed must be None or an int >= 0, got {self.permute_seed!r}")
        if not isinstance(self.conv1x1, bool):
            raise ValueError(f"conv1x1 must be a bool, got {self.conv1x1!r}")
        if self.conv1x1 and self.permute_seed is None:
            raise ValueError("conv1x1=True draws its initial rotations from permute_seed: give an int")
        if self.levels is not None:
            if checks.positive_int("levels", self.levels) < 2:
                raise ValueError(f"levels must be at least 2, got {self.levels}")
            if math.isqrt(self.dim) ** 2 != self.dim:
                raise ValueError(f"a model of grey levels takes square images (1, h, h): dim must be a square, "
                                 f"got {self.dim}")
        if checks.fraction("alpha", self.alpha) >= 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {self.alpha}")


class RealNVP(Flow):
    """The RealNVP :class:`~companion.flows.Flow` of ``config``; ``preprocess`` bijections (points only) run first.

    For a model of levels the transforms are ``[x / L, Logit(alpha)]`` then, per layer,
    ``[ActNorm, Permutation or InvertibleConv1x1 (k > 0, with permute_seed), AffineCoupling]``.

    Example:
        >>> flow = RealNVP(RealNVPConfig(dim=2, layers=4, hidden=16))
        >>> flow.log_prob(torch.randn(3, 2)).shape
        torch.Size([3])
    """

    def __init__(self, config: RealNVPConfig, *, preprocess: list[nn.Module] | None = None) -> None:
        checks.config(config, RealNVPConfig)
        d, c = config.dim, config
        transforms: list[nn.Module] = list(preprocess or [])
        if c.levels is not None:
            if preprocess:
                raise ValueError("a model of grey levels brings its own preprocessing (x / levels, logit)")
            transforms += [ElementwiseAffine(d, log_scale=torch.full((d,), math.log(c.levels)), trainable=False),
                           Logit(d, alpha=c.alpha)]
        g = None if c.permute_seed is None else torch.Generator().manual_seed(c.permute_seed)
        parity = (torch.arange(d) % 2).to(torch.get_default_dtype())
        for k in range(c.layers):
            if c.actnorm:
                transforms.append(ActNorm(d))
            if g is not None and k > 0:
                transforms.append(InvertibleConv1x1(d, generator=g) if c.conv1x1
                                  else Permutation(rng.randperm(d, generator=g)))
            mask = parity if k % 2 == 0 else 1 - parity
            transforms.append(AffineCoupling(d, mask, c.hidden, net_layers=c.net_layers, clamp=c.clamp))
        super().__init__(transforms, StandardNormal(d))
        self.config = config


def dequantize(levels: torch.Tensor, *, generator: torch.Generator | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Uniform dequantisation: integer levels ``(b, ...)`` plus :math:`u \sim U[0, 1)` per entry.

    Each integer :math:`k` becomes a point of the unit bin :math:`[k, k + 1)`; a continuous
    density fitted to these points gives a lower bound on the discrete likelihood (Theis et
    al. 2016). ``u`` is drawn on the CPU from ``generator`` and moved to ``levels``' device;
    the result has ``dtype`` (default: PyTorch's default float dtype).

    Example:
        >>> y = dequantize(torch.tensor([[0, 3]]), generator=torch.Generator().manual_seed(0))
        >>> bool(((y >= torch.tensor([0, 3])) & (y < torch.tensor([1, 4]))).all())
        True
    """
    levels = checks.tensor("levels", levels)
    if levels.is_floating_point() or levels.is_complex() or levels.dtype == torch.bool:
        raise ValueError(f"expected integer levels, got {levels.dtype}")
    u = rng.rand(levels.shape, generator=generator, device=levels.device, dtype=dtype)
    return levels.to(u.dtype) + u


def _check_flow(model: object) -> int | None:
    """The number of grey levels ``model`` is a model of (``None``: points), after checking it is a flow."""
    if not isinstance(model, Flow):
        raise ValueError(f"expected a companion.flows.Flow such as RealNVP(config), got {type(model).__name__}")
    return model.config.levels if isinstance(model, RealNVP) else None


def _data(model: Flow, x: object) -> torch.Tensor:
    """Checked data of ``model``: levels ``(b, 1, h, w)`` flattened to ``(b, D)`` int64, or points ``(b, D)``."""
    levels = _check_flow(model)
    if levels is None:
        return checks.floats("x", x, "b d", model=model, d=model.dim)
    side = math.isqrt(model.dim)
    x = checks.levels("x", x, "b 1 h w", levels=levels, h=side, w=side)
    return checks.same_device("x", x, model).flatten(1)


@torch.no_grad()
def dequantized_nll(flow: Flow, levels: torch.Tensor, *, k: int = 100,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""An upper bound on the discrete NLL from a density on ``levels + u``, ``(b,)`` nats.

    ``levels: (b, ...)`` integers, ``flow`` a density on their flattened ``(b, d)`` form. The
    probability of the bin of :math:`x` is :math:`P(x) = \int_{[0,1)^D} p(x + u)\,du =
    \mathbb{E}_u\, p(x + u)`, so by Jensen's inequality

    .. math:: -\log P(x) \le -\log \frac1k \sum_{j=1}^k p(x + u_j), \qquad u_j \sim U[0, 1)^D ,

    in expectation, tighter as ``k`` grows (``k = 1`` is the usual dequantisation
    bound of Theis et al. 2016; Ho et al. 2019 use the ``k``-sample form). Runs in
    evaluation mode and restores the flow's mode.

    Example:
        >>> f = RealNVP(RealNVPConfig(dim=64, layers=2, hidden=8, levels=17))
        >>> dequantized_nll(f, torch.randint(0, 17, (2, 1, 8, 8)), k=4).shape
        torch.Size([2])
    """
    _check_flow(flow)
    checks.positive_int("k", k)
    x = checks.tensor("levels", levels)
    if isinstance(flow, RealNVP) and flow.config.levels is not None:
        x = checks.levels("levels", x, levels=flow.config.levels)
    if x.dim() < 2 or x[0].numel() != flow.dim:
        raise ValueError(f"expected levels of shape (b, {flow.dim}) or (b, ...) with {flow.dim} entries per "
                         f"example, got {tuple(x.shape)}")
    x = x.flatten(1)
    checks.same_device("levels", x, flow)
    b, dtype = x.shape[0], checks.model_dtype(flow)
    copies = x.repeat(k, 1)                                             # ((k b), D): draw j of image i at j*b + i
    with mode(flow, training=False):
        logp = torch.cat([flow.log_prob(dequantize(chunk, generator=generator, dtype=dtype))
                          for chunk in copies.split(4096)]).reshape(k, b)
    return -(torch.logsumexp(logp.double(), dim=0) - math.log(k)).to(dtype)


def loss(model: Flow, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The per-example training loss ``(b,)`` in nats: :math:`-\log p(x)`, or :math:`-\log p(x + u)` for levels.

    For a model of grey levels :math:`u \sim U[0, 1)^D` is drawn from ``generator`` (one draw
    per image), so the mean over the data is the dequantisation bound of
    :func:`dequantized_nll` with ``k = 1``. Runs in the model's current mode (a trainer's).

    Example:
        >>> flow = RealNVP(RealNVPConfig(dim=64, layers=2, hidden=8, levels=17))
        >>> loss(flow, torch.randint(0, 17, (5, 1, 8, 8)), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5])
    """
    x = _data(model, x)
    if _check_flow(model) is None:
        return -model.log_prob(x)
    return -model.log_prob(dequantize(x, generator=generator, dtype=checks.model_dtype(model)))


@torch.no_grad()
def sample(model: Flow, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` examples in the data's form: points ``(n, dim)``, or grey levels ``(n, 1, h, w)`` int64.

    :math:`y = f^{-1}(z)`, :math:`z \\sim \\mathcal{N}(0, I)` drawn on the CPU from ``generator``;
    for levels, :math:`\\lfloor y \\rfloor` clamped to ``0 .. levels-1``. Runs in evaluation
    mode and restores the model's mode.

    Example:
        >>> flow = RealNVP(RealNVPConfig(dim=64, layers=2, hidden=8, levels=17))
        >>> x = sample(flow, 3, generator=torch.Generator().manual_seed(0))
        >>> x.shape, x.dtype, bool(((x >= 0) & (x <= 16)).all())
        (torch.Size([3, 1, 8, 8]), torch.int64, True)
    """
    levels = _check_flow(model)
    y = model.sample(checks.positive_int("n", n), generator=generator)
    if levels is None:
        return y
    side = math.isqrt(model.dim)
    return y.floor().clamp(0, levels - 1).long().reshape(n, 1, side, side)


@torch.no_grad()
def nll(model: Flow, x: torch.Tensor, *, generator: torch.Generator | None = None, k: int = 100) -> torch.Tensor:
    """Negative log-likelihood ``(b,)`` in nats: exact for points, :func:`dequantized_nll` for levels.

    Runs in evaluation mode and restores the model's mode; ``generator`` and ``k`` matter
    only for a model of levels (``k`` dequantisation draws per image).

    Example:
        >>> flow = RealNVP(RealNVPConfig(dim=2, layers=2, hidden=8))
        >>> nll(flow, torch.zeros(4, 2)).shape
        torch.Size([4])
    """
    x = _data(model, x)
    if _check_flow(model) is not None:
        return dequantized_nll(model, x, k=k, generator=generator)
    with mode(model, training=False):
        return -model.log_prob(x)


def two_moons_log_prob(x: torch.Tensor, *, noise: float = 0.1, n_theta: int = 256) -> torch.Tensor:
    r"""The true log density of :func:`companion.data.two_moons` at ``x: (b, 2)``, shape ``(b,)``, in float64.

    A moon with probability 1/2, an angle :math:`\theta \sim U(0, \pi)`, then
    noise :math:`\mathcal{N}(0, \sigma^2 I)`: :math:`p(x) = \frac{1}{2\pi} \sum_y
    \int_0^\pi \mathcal{N}(x; c_y(\theta), \sigma^2 I)\, d\theta`, integrated by the
    midpoint rule on ``n_theta`` angles (exact once :math:`\pi / n_\theta \ll \sigma`).

    Example:
        >>> x = torch.tensor([[0.0, 1.0], [0.5, 5.0]])   # on the upper moon, far away
        >>> (two_moons_log_prob(x) > torch.tensor([-1.0, -100.0])).tolist()
        [True, False]
    """
    x = checks.floats("x", x, "b 2")
    noise, n_theta = checks.positive("noise", noise), checks.positive_int("n_theta", n_theta)
    theta = (torch.arange(n_theta, dtype=torch.float64, device=x.device) + 0.5) * math.pi / n_theta
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    centres = torch.cat([upper, lower])                            # (2 n_theta, 2)
    out = []
    for chunk in x.double().split(4096):                           # bounded memory: (4096, 2 n_theta)
        sq_dist = ((chunk[:, None, :] - centres[None]) ** 2).sum(-1)
        out.append(torch.logsumexp(-sq_dist / (2 * noise ** 2), dim=1))
    return torch.cat(out) - math.log(2 * math.pi * noise ** 2) - math.log(2 * n_theta)
