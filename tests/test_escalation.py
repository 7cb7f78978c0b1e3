"""The escalation of an inconclusive check (abcparam.check.escalation): which passes it adds, when the budget stops
it, and the keyword arguments it suggests; on fake passes with a fake clock, then on a real MLP."""

from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch

import abcparam
from abcparam.check import escalation
from abcparam.models import MLP


class Passes:
    """A fake check: each pass returns the next status, and takes ``per_unit`` seconds per unit of cost; ``rising``: per
    pass, whether its loss rises (a bool for every pass, or a list)."""

    def __init__(self, statuses, per_unit=1e-6, rising=False):
        self.statuses, self.per_unit = list(statuses), per_unit
        self.rising = rising if isinstance(rising, list) else [rising] * len(self.statuses)
        self.now, self.calls, self.scales = 0.0, [], []

    def clock(self):
        return self.now

    def __call__(self, widths, seeds, escalated, scale):
        assert escalated == bool(self.calls)  # only the first pass may excuse finite-width corrections
        assert isinstance(scale, Fraction)
        self.calls.append((widths, seeds))
        self.scales.append(scale)
        self.now += self.per_unit * escalation.cost(widths, seeds)
        k = len(self.calls) - 1
        return SimpleNamespace(status=self.statuses[k], lr_too_large=(128, 2.5) if self.rising[k] else None, widths=widths,
                               seeds=seeds, lr=0.02 * float(scale))


W, S = [128, 256, 512, 1024], [0, 1]


def test_the_plan_doubles_the_seeds_then_the_widths_twice():
    assert escalation.plan(W, [3, 5]) == [("seeds", W, [3, 5, 6, 7]), ("widths", [256, 512, 1024, 2048], [3, 5, 6, 7]),
                                          ("widths", [512, 1024, 2048, 4096], [3, 5, 6, 7])]
    assert escalation.cost([2, 3], [0, 1, 2]) == 3 * (4 + 9)


def test_a_decided_first_pass_adds_nothing():
    p = Passes(["pass"])
    r = escalation.escalate(p, W, S, 30.0, p.clock)
    assert len(p.calls) == 1 and (r.escalation, r.suggestion) == ([], {})


def test_seeds_are_added_first_and_decide():
    p = Passes(["inconclusive", "pass"])
    r = escalation.escalate(p, W, S, 30.0, p.clock)
    assert p.calls[1] == (W, [0, 1, 2, 3]) and r.escalation == ["seeds=(0, 1, 2, 3): pass"] and r.suggestion == {}


def test_every_pass_then_the_next_octave_is_suggested():
    p = Passes(["inconclusive"] * 4)
    r = escalation.escalate(p, W, S, 200.0, p.clock)
    assert p.calls[2] == ([256, 512, 1024, 2048], [0, 1, 2, 3]) and p.calls[3] == ([512, 1024, 2048, 4096], [0, 1, 2, 3])
    assert r.escalation == ["seeds=(0, 1, 2, 3): inconclusive", "widths=[256, 512, 1024, 2048]: inconclusive",
                            "widths=[512, 1024, 2048, 4096]: inconclusive"]
    assert r.suggestion == {"widths": "[1024, 2048, 4096, 8192]", "seeds": "(0, 1, 2, 3, 4, 5, 6, 7)"}
    p = Passes(["inconclusive", "inconclusive", "pass"])  # the first octave decides: the second is not run
    r = escalation.escalate(p, W, S, 200.0, p.clock)
    assert len(p.calls) == 3 and r.status == "pass" and r.suggestion == {}


def test_the_budget_stops_a_pass_whose_predicted_cost_does_not_fit():
    # first pass: 2 * (128^2 + ... + 1024^2) = 2_785_280 units at 1e-6 s = 2.79 s; seeds pass 5.57 s; widths pass 22.3 s;
    # the next octave 89.1 s
    p = Passes(["inconclusive"] * 4)
    r = escalation.escalate(p, W, S, 120.0, p.clock)  # 2.79 + 5.57 + 22.28 + 89.13 = 119.8 fits 120
    assert len(p.calls) == 4
    p = Passes(["inconclusive"] * 4)
    r = escalation.escalate(p, W, S, 119.0, p.clock)
    assert len(p.calls) == 3 and r.suggestion == {"widths": "[512, 1024, 2048, 4096]", "seeds": "(0, 1, 2, 3)", "budget": "120"}
    p = Passes(["inconclusive"] * 3)
    r = escalation.escalate(p, W, S, 30.0, p.clock)  # 2.79 + 5.57 + 22.28 = 30.6 > 30: the widths pass is not run
    assert len(p.calls) == 2 and r.escalation == ["seeds=(0, 1, 2, 3): inconclusive"]
    assert r.suggestion == {"widths": "[256, 512, 1024, 2048]", "seeds": "(0, 1, 2, 3)", "budget": "31"}
    p = Passes(["inconclusive"] * 3)
    assert len(escalation.escalate(p, W, S, 30.7, p.clock).escalation) == 2
    p = Passes(["inconclusive"] * 3)
    r = escalation.escalate(p, W, S, 8.0, p.clock)  # 2.79 + 5.57 = 8.36 > 8: not even the seeds
    assert len(p.calls) == 1 and r.suggestion == {"seeds": "(0, 1, 2, 3)", "budget": "9"}
    for off in (0, None):
        p = Passes(["inconclusive"] * 3)
        assert len(escalation.escalate(p, W, S, off, p.clock).escalation) == 0 and len(p.calls) == 1


def test_a_rising_loss_lowers_the_learning_rate_twice_after_the_seeds_then_suggests_a_quarter_more():
    p = Passes(["inconclusive"] * 5, rising=True)  # never wider widths under a rising loss, however large the budget
    r = escalation.escalate(p, W, S, 1000.0, p.clock)
    assert p.calls == [(W, S)] + [(W, [0, 1, 2, 3])] * 3 and p.scales == [1, 1, Fraction(1, 4), Fraction(1, 16)]
    assert r.escalation == ["seeds=(0, 1, 2, 3): inconclusive", "lr=0.005: inconclusive", "lr=0.00125: inconclusive"]
    assert r.suggestion == {"lr": "0.0003125"} and r.lowered_from == (0.02, 128, 2.5)
    p = Passes(["inconclusive", "pass"], rising=True)  # an added pass that agrees outright decides it: no lowering
    r = escalation.escalate(p, W, S, 30.0, p.clock)
    assert r.status == "pass" and r.suggestion == {} and not hasattr(r, "lowered_from")
    p = Passes(["fail"], rising=True)  # a decided check (a decisive blow-up) adds nothing and suggests nothing
    r = escalation.escalate(p, W, S, 30.0, p.clock)
    assert len(p.calls) == 1 and r.suggestion == {}
    p = Passes(["inconclusive", "inconclusive", "pass"], rising=[True, True, False])  # a quarter of the rate decides
    r = escalation.escalate(p, W, S, 30.0, p.clock)
    assert r.status == "pass" and p.scales[2] == Fraction(1, 4) and r.escalation[-1] == "lr=0.005: pass"
    assert r.lowered_from == (0.02, 128, 2.5)


def test_once_the_loss_stops_rising_the_widths_move_up_at_the_lowered_rate():
    p = Passes(["inconclusive"] * 4 + ["pass"], rising=[True, True, False, False, False])
    r = escalation.escalate(p, W, S, 1000.0, p.clock)
    assert p.scales == [1, 1, Fraction(1, 4), Fraction(1, 4), Fraction(1, 4)]
    assert p.calls[3:] == [([256, 512, 1024, 2048], [0, 1, 2, 3]), ([512, 1024, 2048, 4096], [0, 1, 2, 3])]
    assert r.escalation == ["seeds=(0, 1, 2, 3): inconclusive", "lr=0.005: inconclusive",
                            "widths=[256, 512, 1024, 2048]: inconclusive", "widths=[512, 1024, 2048, 4096]: pass"]


def test_the_budget_stops_a_lowered_rate_pass_and_the_suggestion_runs_it_by_hand():
    # first pass 2.79 s, seeds pass 5.57 s; the lr pass costs as much as the seeds pass: 13.93 > 10
    p = Passes(["inconclusive"] * 3, rising=True)
    r = escalation.escalate(p, W, S, 10.0, p.clock)
    assert len(p.calls) == 2 and r.suggestion == {"lr": "0.005", "seeds": "(0, 1, 2, 3)", "budget": "14"}
    assert not hasattr(r, "lowered_from")  # nothing was measured at a lowered rate
    p = Passes(["inconclusive"] * 3, rising=True)
    assert len(escalation.escalate(p, W, S, 14.0, p.clock).escalation) == 2


def test_an_inconclusive_report_names_the_keyword_arguments():
    build = lambda n: MLP(16, n, 4, depth=2, param=abcparam.mup(n, 128), nonlinearity="relu")  # noqa: E731
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g))
    r = abcparam.coord_check(build, [128, 256, 512, 1024], batch, optimizer=torch.optim.SGD, lr=0.1, budget=0)
    assert r.status == "inconclusive" and r.escalation == []  # one pass: step-1 SGD slopes short of their prediction
    assert r.suggestion["seeds"] == "(0, 1, 2, 3)" and "budget" in r.suggestion
    assert r.outcome().endswith(f"; try seeds=(0, 1, 2, 3) (or budget={r.suggestion['budget']} to let the check add them)")
    full = abcparam.coord_check(build, [128, 256, 512, 1024], batch, optimizer=torch.optim.SGD, lr=0.1)
    assert full.escalation and full.escalation[0].startswith("seeds=(0, 1, 2, 3): ")
    assert "added after an inconclusive pass: seeds=(0, 1, 2, 3)" in full.summary()


def test_the_budget_is_validated():
    with pytest.raises(ValueError, match=r"^budget: a finite number >= 0 or None \(a time in seconds\), got -1$"):
        abcparam.coord_check(lambda n: MLP(4, n, 2, param=abcparam.mup(n, 8)), [8, 16, 32], torch.randn(2, 4),
                             optimizer=torch.optim.SGD, lr=0.1, budget=-1)


def test_a_rising_loss_is_measured_again_at_a_quarter_of_the_rate_and_the_report_says_so():
    # muP MLP under SGD at lr 1: the loss rises 4.7x at width 128 and twice the seeds do not settle it; a quarter of the
    # rate measures the same exponents (a constant changes none) and agrees outright
    build = lambda n: MLP(16, n, 4, depth=2, param=abcparam.mup(n, 128), nonlinearity="tanh")  # noqa: E731
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g))
    r = abcparam.coord_check(build, [128, 256, 512, 1024], batch, optimizer=torch.optim.SGD, lr=1.0, expect="feature_learning")
    assert r.status == "pass" and r.lr == 0.25 and r.lr_too_large is None
    assert r.escalation == ["seeds=(0, 1, 2, 3): inconclusive", "lr=0.25: pass"]
    asked, width, rise = r.lowered_from
    assert (asked, width) == (1.0, 128) and rise > 2
    assert f"(measured at lr 0.25: at the lr asked for, 1, the loss rises {rise:.1f}x at width 128; " in r.outcome()
    assert r.to_dict()["lowered_from"] == {"lr": 1.0, "width": 128, "loss_rise": rise}
    once = abcparam.coord_check(build, [128, 256, 512, 1024], batch, optimizer=torch.optim.SGD, lr=1.0, budget=0)
    assert once.status == "inconclusive" and once.lowered_from is None and "measured at lr" not in once.outcome()


def test_only_the_first_pass_of_a_real_check_excuses_finite_width_corrections(monkeypatch):
    from abcparam.check import stats

    calls = []
    judge = stats.judge

    def recording(widths, *args, **kwargs):
        calls.append((tuple(widths), kwargs["excuse"]))
        return judge(widths, *args, **kwargs)

    monkeypatch.setattr(stats, "judge", recording)
    build = lambda n: MLP(16, n, 4, depth=2, param=abcparam.mup(n, 128), nonlinearity="relu")  # noqa: E731
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g))
    r = abcparam.coord_check(build, [128, 256, 512, 1024], batch, optimizer=torch.optim.SGD, lr=0.1)
    assert len(r.escalation) == 2  # the first pass, the seeds pass and one octave up: three passes judged
    first = [excuse for widths, excuse in calls if widths == (128, 256, 512, 1024)]
    n = len(first) // 2  # the first pass and the seeds pass judge the same widths, as many quantities each
    assert n > 0 and first[:n] == [True] * n and first[n:] == [False] * n
    assert [excuse for widths, excuse in calls if widths == (256, 512, 1024, 2048)] == [False] * n
