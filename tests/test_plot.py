import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from companion.plot import (course_style, density, evaluate_grid, html_table, image_grid, loss_curves,  # noqa: E402
                            png_row, scatter)


def test_helpers_return_figures_and_draw_what_they_are_given(g):
    with course_style():
        fig = scatter({"a": torch.randn(50, 2, generator=g), "b": torch.randn(30, 2, generator=g)})
        assert len(fig.axes[0].collections) == 2
        fig = image_grid(torch.rand(7, 1, 8, 8, generator=g), nrow=4)
        image = fig.axes[0].images[0].get_array()
        assert image.shape == (2 * 10, 4 * 10)          # 2 rows of 4 tiles, 8 px + 2 px padding
        fig = loss_curves({"train": [3.0, 2.0, 1.0], "val": [3.5, 2.5, 1.5]}, smooth=2)
        assert len(fig.axes[0].lines) == 2
        fig = density(lambda x: -0.5 * x.pow(2).sum(1), (-3, 3, -3, 3), resolution=20)
        assert fig.axes[0].collections
    plt.close("all")


def test_evaluate_grid_evaluates_the_function_at_the_grid_points():
    xx, yy, values = evaluate_grid(lambda p: p[:, 0] + 10 * p[:, 1], (0, 1, 0, 2), resolution=5)
    assert xx.shape == (5, 5)
    assert torch.allclose(values, xx + 10 * yy)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        scatter(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="bounds"):
        evaluate_grid(lambda p: p[:, 0], (1, 0, 0, 1))
    with pytest.raises(ValueError, match="images"):
        image_grid(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        loss_curves({"x": []})
    plt.close("all")


def test_html_table_escapes_nothing_and_checks_row_lengths():
    html = html_table(["a", "b"], [[1, "x"], [2.5, "<i>y</i>"]]).data
    assert html.count("<tr>") == 3 and "<td>2.5</td>" in html and "<td><i>y</i></td>" in html
    with pytest.raises(ValueError, match="2 cells"):
        html_table(["a", "b"], [[1]])


def test_png_row_tiles_images_left_to_right_dark_on_white():
    from io import BytesIO

    from PIL import Image

    images = torch.zeros(3, 1, 8, 8)
    images[1] = 1.0                                               # the middle image is all ink
    picture = Image.open(BytesIO(png_row(images, zoom=2)))
    assert picture.size == (3 * 8 * 2, 8 * 2)
    assert picture.getpixel((0, 0)) == 255 and picture.getpixel((8 * 2 + 1, 1)) == 0
    with pytest.raises(ValueError, match="zoom"):
        png_row(images, zoom=0)
    with pytest.raises(ValueError, match="shape"):
        png_row(torch.zeros(8, 8))
