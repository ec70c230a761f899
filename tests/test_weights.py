"""Checkpoint I/O: a round trip through half precision restores every tensor to half-precision accuracy."""
import pytest
import torch

from companion.weights import load_weights, save_weights


def test_round_trip_in_half_precision(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    path = save_weights(net, tmp_path / "net", {"seed": 1})
    assert path.suffix == ".pt" and (tmp_path / "net.json").exists()
    state, meta = load_weights(tmp_path / "net")
    assert meta == {"seed": 1}
    for key, value in net.state_dict().items():
        assert state[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(state[key], value.to(state[key].dtype), rtol=1e-3, atol=1e-3)


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError, match="train it with tools/train_checkpoints.py"):
        load_weights(tmp_path / "nothing")
