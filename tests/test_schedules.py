"""fastdl.schedules: values against their formulas and PyTorch's schedulers."""

import math

import pytest

from fastdl import schedules as S


def test_step_decay():
    s = S.StepDecay(step_size=3, gamma=0.5, initial_lr=0.1)
    assert [s(t) for t in range(8)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])


def test_inverse_sqrt_exponential_cosine():
    assert [S.InverseSqrtDecay(initial_lr=1.0)(t) for t in range(4)] == pytest.approx(
        [1.0, 1 / math.sqrt(2), 1 / math.sqrt(3), 0.5])
    assert [S.ExponentialDecay(0.9, initial_lr=2.0)(t) for t in range(3)] == pytest.approx([2.0, 1.8, 1.62])
    c = S.CosineDecay(total=4, min_lr=0.1, initial_lr=1.1)
    assert [c(t) for t in range(6)] == pytest.approx([1.1, 0.1 + 0.5 * (1 + math.cos(math.pi / 4)), 0.6,
                                                       0.1 + 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.1, 0.1])


def test_initial_lr_from_the_optimizer():
    s = S.StepDecay(2)
    with pytest.raises(RuntimeError, match="initial_lr"):
        s(0)
    s.start(0.3)
    assert s(2) == pytest.approx(0.03)
    fixed = S.StepDecay(2, initial_lr=1.0)
    fixed.start(0.3)
    assert fixed(0) == 1.0


def test_reduce_on_plateau_matches_pytorch():
    torch = pytest.importorskip("torch")
    values = [1.0, 0.9, 0.9, 0.9, 0.95, 0.5, 0.5, 0.49999, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4]
    for kwargs in ({"patience": 1}, {"patience": 2, "cooldown": 1, "factor": 0.5, "min_lr": 0.02},
                   {"patience": 0, "threshold": 0.1, "threshold_mode": "abs"}, {"patience": 1, "mode": "max"}):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        ours = S.ReduceLROnPlateau(**kwargs)
        lr = 1.0
        for v in values:
            ref.step(v)
            lr = ours.update(v, lr)
            assert lr == pytest.approx(opt.param_groups[0]["lr"]), kwargs


def test_schedule_errors():
    with pytest.raises(ValueError, match="step_size"):
        S.StepDecay(0)
    with pytest.raises(ValueError, match="gamma"):
        S.ExponentialDecay(-0.5)
    with pytest.raises(ValueError, match="total"):
        S.CosineDecay(0)
    with pytest.raises(ValueError, match="factor"):
        S.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="mode"):
        S.ReduceLROnPlateau(mode="up")
    with pytest.raises(ValueError, match="t:"):
        S.StepDecay(1, initial_lr=0.1)(-1)
    with pytest.raises(TypeError, match="update"):
        S.ReduceLROnPlateau()(3)
