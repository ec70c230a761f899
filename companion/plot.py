"""One look for every figure of the book: 2-D scatters, density maps, image grids, loss curves.

Every helper returns the ``matplotlib.figure.Figure`` it drew (or draws on the
``ax`` it is given and returns that axis's figure), so a chapter can save,
adjust or close it. :func:`course_style` is a context manager; nothing here
changes matplotlib's global settings on import.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager

import matplotlib as mpl
import matplotlib.pyplot as plt
import torch
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from companion.utils import check_shape

__all__ = ["course_style", "STYLE", "COLORS", "scatter", "density", "evaluate_grid",
           "image_grid", "png_row", "loss_curves", "html_table"]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
"""The book's colour cycle: data blue, model red, then the rest."""

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (6.0, 4.0),
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "axes.prop_cycle": mpl.cycler(color=COLORS), "image.cmap": "viridis",
}
"""The rcParams of :func:`course_style`."""


@contextmanager
def course_style():
    """Use the book's matplotlib settings inside a ``with`` block.

    Notebooks call ``plt.style.use(STYLE)`` once instead, for the whole chapter.
    """
    with mpl.rc_context(STYLE):
        yield


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.5)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def scatter(points: torch.Tensor | Mapping[str, torch.Tensor], *, ax: Axes | None = None,
            s: float = 4.0, alpha: float = 0.5, title: str | None = None,
            lim: float | None = None) -> Figure:
    """Scatter one or several 2-D point sets ``(n, 2)`` (a dict gives a legend).

    Example:
        >>> fig = scatter({"data": torch.randn(10, 2)})
        >>> len(fig.axes)
        1
    """
    sets = {"": points} if isinstance(points, torch.Tensor) else dict(points)
    ax = _axes(ax)
    for label, x in sets.items():
        check_shape(f"points[{label!r}]" if label else "points", x, "n 2")
        x = x.detach().cpu().numpy()
        ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, label=label or None, linewidths=0)
    if len(sets) > 1:
        ax.legend(markerscale=3, loc="best")
    if lim is not None:
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim))
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax.figure


def evaluate_grid(fn: Callable[[torch.Tensor], torch.Tensor],
                  bounds: tuple[float, float, float, float], resolution: int = 150
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluate ``fn: (n, 2) -> (n,)`` (a log density, a class probability) on a grid.

    ``bounds`` is ``(xmin, xmax, ymin, ymax)``. Returns ``(xx, yy, values)``,
    each ``(resolution, resolution)``, ready for ``contour`` or ``pcolormesh``.
    """
    xmin, xmax, ymin, ymax = bounds
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax) with min < max, got {bounds}")
    xs = torch.linspace(xmin, xmax, resolution)
    ys = torch.linspace(ymin, ymax, resolution)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        values = fn(grid)
    check_shape("fn(grid)", values, "n", n=grid.shape[0])
    return xx, yy, values.reshape(resolution, resolution).float()


def density(log_prob: Callable[[torch.Tensor], torch.Tensor],
            bounds: tuple[float, float, float, float], *, ax: Axes | None = None,
            resolution: int = 150, log: bool = False, title: str | None = None) -> Figure:
    """Heat map of a 2-D density ``exp(log_prob)`` (or of ``log_prob`` with ``log=True``)."""
    xx, yy, logp = evaluate_grid(log_prob, bounds, resolution)
    ax = _axes(ax)
    values = logp if log else logp.exp()
    mesh = ax.pcolormesh(xx.numpy(), yy.numpy(), values.numpy(), shading="auto", cmap="magma")
    ax.figure.colorbar(mesh, ax=ax, shrink=0.8, label="log density" if log else "density")
    ax.set_aspect("equal")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax.figure


def image_grid(images: torch.Tensor, *, nrow: int | None = None, ax: Axes | None = None,
               title: str | None = None, vmin: float = 0.0, vmax: float = 1.0,
               pad: int = 1) -> Figure:
    """Tile grey images ``(b, 1, h, w)`` or ``(b, h, w)`` into one picture, ``nrow`` per row.

    Example:
        >>> fig = image_grid(torch.rand(6, 1, 8, 8), nrow=3)
        >>> len(fig.axes)
        1
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    check_shape("images", images, "b 1 h w")
    b = images.shape[0]
    if b == 0:
        raise ValueError("images is empty")
    nrow = nrow or int(b ** 0.5 + 0.999)  # images per row
    rows = -(-b // nrow)
    images = images.detach().float().cpu().clamp(vmin, vmax)
    filler = torch.full((nrow * rows - b, *images.shape[1:]), vmin)
    padded = torch.nn.functional.pad(torch.cat([images, filler]), (pad, pad, pad, pad),
                                     value=vmin + 0.15 * (vmax - vmin))  # light grey frames
    tiled = rearrange(padded, "(r c) 1 h w -> (r h) (c w)", r=rows, c=nrow)
    ax = _axes(ax, figsize=(0.45 * nrow + 0.5, 0.45 * rows + 0.5))
    ax.imshow(tiled.numpy(), cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def png_row(images: torch.Tensor, *, zoom: int = 6) -> bytes:
    """Grey images ``(b, 1, h, w)`` in [0, 1] as one PNG row, dark ink on white, for a widget.

    Each pixel becomes a ``zoom x zoom`` block (an ``ipywidgets.Image`` is
    redrawn from these bytes in a few milliseconds, much faster than a figure).

    Example:
        >>> png_row(torch.rand(3, 1, 8, 8), zoom=2)[:4]
        b'\\x89PNG'
    """
    from PIL import Image

    check_shape("images", images, "b 1 h w")
    if not isinstance(zoom, int) or zoom < 1:
        raise ValueError(f"zoom must be a positive int, got {zoom!r}")
    row = rearrange(images.detach().float().cpu().clamp(0, 1), "b 1 h w -> h (b w)")
    ink = (255 * (1 - row)).round().to(torch.uint8).numpy()
    picture = Image.fromarray(ink).resize((ink.shape[1] * zoom, ink.shape[0] * zoom), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    return buffer.getvalue()


def loss_curves(histories: Mapping[str, Sequence[float]], *, ax: Axes | None = None,
                smooth: int = 1, ylabel: str = "loss", logy: bool = False,
                title: str | None = None) -> Figure:
    """Plot one or more loss histories against the step, optionally as a moving average."""
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    ax = _axes(ax, figsize=(6.0, 3.5))
    for label, history in histories.items():
        h = torch.as_tensor(list(history), dtype=torch.float64)
        if h.numel() == 0:
            raise ValueError(f"history {label!r} is empty")
        if smooth > 1 and h.numel() >= smooth:
            h = torch.nn.functional.avg_pool1d(h[None, None], smooth, stride=1)[0, 0]
        ax.plot((torch.arange(h.numel()) + smooth).numpy(), h.numpy(), label=label)
    ax.set(xlabel="step", ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(histories) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> object:
    """A small HTML table of ``rows`` under ``header``, as a Jupyter display object.

    The site renders it as a table (a Markdown table printed from code would
    show as plain text), styled by the theme like a pandas ``DataFrame``
    (class ``dataframe``). Cells are shown with ``str``; format numbers first.

    Example:
        >>> html_table(["w", "agrees"], [[1, "85%"]]).data
        '<table class="dataframe"><thead><tr><th>w</th><th>agrees</th></tr></thead><tbody><tr><td>1</td><td>85%</td></tr></tbody></table>'
    """
    from IPython.display import HTML

    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row must have {len(header)} cells like the header")
    cells = lambda tag, row: "".join(f"<{tag}>{c}</{tag}>" for c in row)  # noqa: E731
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return HTML(f"<table class=\"dataframe\"><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>")
