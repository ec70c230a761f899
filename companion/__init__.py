"""Minimal, tested implementations behind the chapters of *Generative AI on a laptop CPU*.

One module per concept: ``data`` (toy sets, digits, text), ``train`` (one
training helper), ``plot`` (the book's figures), ``utils`` (seeding, devices,
model size and mode, showing source), ``checks`` (input checks at every public
boundary), ``rng`` (random draws), ``weights`` (shipped checkpoints), ``metrics``
(measurements of samples), and one module (or two or three) per model family.

**One protocol for the generative families.** Every family module - :mod:`~companion.vae`, :mod:`~companion.gan`,
:mod:`~companion.realnvp` (the flows), :mod:`~companion.diffusion`, :mod:`~companion.arm` - speaks
the same verbs with the same signatures and units:

* a frozen config dataclass that checks itself (``VAEConfig``, ``GANConfig`` and
  ``DigitGANConfig``, ``RealNVPConfig``, ``DiffusionConfig``, ``PixelARMConfig``),
  from which the model is built: ``Model(config)``;
* ``loss(model, x, *, generator=None) -> (b,)``: the per-example training loss,
  which :func:`companion.train.train` averages and minimises (for the likelihood
  families it is a negative log-likelihood or a bound on it, in nats). The GAN,
  whose training is a game between two networks, has ``train_gan`` instead;
* ``sample(model, n, *, generator=None) -> x``: ``n`` new examples in the form of
  the data the model is trained on - the form ``loss`` and ``nll`` take, so
  ``nll(model, sample(model, n))`` is always defined: integer grey levels
  ``(n, 1, 8, 8)`` for models of the digits' levels, float intensities in [0, 1]
  ``(n, 1, 8, 8)`` for models of intensities, points ``(n, d)`` for 2-D data;
* ``nll(model, x, *, generator=None) -> (b,)``: the negative log-likelihood in nats
  per example, exact (ARM, flow on continuous data) or an upper bound (VAE's
  importance-weighted bound, the flow's dequantisation bound, diffusion's
  variational bound) where the family has one. The GAN has none.

Options beyond these (``k``, ``steps``, ``temperature``...) are keyword-only with
defaults. :mod:`companion.compare` is a table of the five families built from
these verbs alone.

**One rule for randomness and devices.** Randomness comes only from the ``generator`` argument, a CPU ``torch.Generator``
(``None`` means PyTorch's default one): the numbers are drawn on the CPU and
moved to the model's device (:mod:`companion.rng`), so one seed gives the same
samples on the CPU, CUDA and MPS. Library code never seeds or reseeds the global
generator (:func:`companion.utils.fresh_init` builds a model from a seed without
touching it). Models and data go to a device together (``model.to(device)``,
``x.to(device)``); every trainer, sampler and estimator then works there, and
leaves the model in the train/eval mode it found it in
(:func:`companion.utils.mode`). ``seed_everything`` is for notebooks only.

Bad input at a public boundary - a NumPy array, a float64 batch (cast to the
model's dtype), grey levels where intensities are expected or the reverse,
labels out of range, an empty batch, NaN - raises a ``ValueError`` that says
what was expected (:mod:`companion.checks`).
"""
__version__ = "0.3.0"
