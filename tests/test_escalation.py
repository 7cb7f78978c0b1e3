"""The escalation of an inconclusive check (abcparam.check.escalation): which passes it adds, when the budget stops
it, and the keyword arguments it suggests; on fake passes with a fake clock, then on a real MLP."""

from types import SimpleNamespace

import pytest
import torch

import abcparam
from abcparam.check import escalation
from abcparam.models import MLP


class Passes:
    """A fake check: each pass returns the next status, and takes ``per_unit`` seconds per unit of cost."""

    def __init__(self, statuses, per_unit=1e-6, lr_too_large=None):
        self.statuses, self.per_unit, self.lr_too_large = list(statuses), per_unit, lr_too_large
        self.now, self.calls = 0.0, []

    def clock(self):
        return self.now

    def __call__(self, widths, seeds, escalated):
        assert escalated == bool(self.calls)  # only the first pass may excuse finite-width corrections
        self.calls.append((widths, seeds))
        self.now += self.per_unit * escalation.cost(widths, seeds)
        return SimpleNamespace(status=self.statuses[len(self.calls) - 1], lr_too_large=self.lr_too_large, widths=widths,
                               seeds=seeds, lr=0.02)


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


def test_a_rising_loss_adds_the_seeds_pass_only_and_suggests_a_smaller_learning_rate_when_it_stays_undecided():
    p = Passes(["inconclusive"] * 4, lr_too_large=(128, 2.5))  # the seeds pass only, however large the budget
    r = escalation.escalate(p, W, S, 1000.0, p.clock)
    assert len(p.calls) == 2 and r.escalation == ["seeds=(0, 1, 2, 3): inconclusive"] and r.suggestion == {"lr": "0.005"}
    p = Passes(["inconclusive", "pass"], lr_too_large=(128, 2.5))  # an added pass that agrees outright decides it
    r = escalation.escalate(p, W, S, 30.0, p.clock)
    assert r.status == "pass" and r.suggestion == {}
    p = Passes(["fail"], lr_too_large=(128, 2.5))  # a decided check (a decisive blow-up) suggests nothing
    assert escalation.escalate(p, W, S, 30.0, p.clock).suggestion == {}


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
