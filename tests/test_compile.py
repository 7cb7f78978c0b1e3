"""torch.compile(fullgraph=True) on abcparam layers matches eager (one small graph: ~20 s on 2 cores)."""

import pytest
import torch
from torch import nn

import abcparam


def test_compiled_fullgraph_matches_eager_forward_and_backward():
    p = abcparam.mup(64, 16)
    torch.manual_seed(0)
    model = nn.Sequential(
        abcparam.Embedding(20, 64, param=p),
        abcparam.Linear(64, 64, param=p),
        nn.Tanh(),
        abcparam.Linear(64, 7, role="output", param=p),
    )
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    idx = torch.randint(0, 20, (3, 5))
    eager_out = model(idx)
    eager_out.square().sum().backward()
    eager_grads = [q.grad.clone() for q in model.parameters()]
    model.zero_grad()
    out = compiled(idx)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager_out)
    for g, q in zip(eager_grads, model.parameters()):
        torch.testing.assert_close(q.grad, g)
    # the width factors are read from the compiled wrapper as from the model
    opt = abcparam.wrap(torch.optim.Adam(compiled.parameters(), lr=1e-3), compiled)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([2.5e-4, 5e-4, 1e-3])
