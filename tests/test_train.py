import pytest
import torch

from companion.train import evaluate, minibatches, train


def _regression(g):
    x = torch.randn(256, 3, generator=g)
    w_true = torch.tensor([1.0, -2.0, 0.5])
    return x, x @ w_true, w_true


def test_train_recovers_least_squares_and_is_seeded(g):
    x, y, w_true = _regression(g)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1, bias=False)
        history = train(lambda xb, yb: (model(xb).squeeze(1) - yb) ** 2, model.parameters(), (x, y),
                        steps=400, lr=0.05, batch_size=64, seed=1, progress=False)
        results.append((model.weight.detach().clone(), history))
    (w1, h1), (w2, h2) = results
    assert torch.allclose(w1[0], w_true, atol=1e-2)
    assert h1 == h2 and torch.equal(w1, w2)
    assert h1[-1] < 1e-3 * h1[0]


def test_evaluate_is_the_mean_over_all_examples(g):
    x = torch.randn(1000, 2, generator=g)
    assert evaluate(lambda xb: xb.pow(2).sum(1), x, batch_size=7) == pytest.approx(x.pow(2).sum(1).mean().item(), rel=1e-6)


def test_minibatches_cover_every_example_once_per_epoch(g):
    x = torch.arange(10)
    batches = minibatches(x, 4, generator=g)
    epoch = torch.cat([next(batches)[0] for _ in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))


def test_bad_input_raises_clear_errors():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="first axis"):
        next(minibatches((torch.zeros(3), torch.zeros(4)), 2))
    with pytest.raises(ValueError, match="empty"):
        next(minibatches(torch.zeros(0, 2), 2))
    with pytest.raises(ValueError, match="steps"):
        train(lambda xb: xb, [w], torch.zeros(4), steps=0)
    with pytest.raises(ValueError, match=r"shape \(b,\)"):
        train(lambda xb: (w * xb).sum(), [w], torch.zeros(4), steps=1, progress=False)
    with pytest.raises(ValueError, match="no trainable"):
        train(lambda xb: xb, [], torch.zeros(4), steps=1)


def test_train_given_a_model_trains_it_in_training_mode_and_restores_its_mode(g):
    x, y, _ = _regression(g)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Dropout(0.0)).eval()
    seen = []

    def loss_fn(xb, yb):
        seen.append(model.training)
        return (model(xb).squeeze(1) - yb) ** 2

    train(loss_fn, model, (x, y), steps=3, progress=False)
    assert seen == [True, True, True] and not model.training


def test_a_diverging_loss_stops_with_a_clear_error():
    w = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match="the loss is nan at step 0: training diverged"):
        train(lambda xb: w * xb * float("nan"), [w], torch.ones(4), steps=2, progress=False)
