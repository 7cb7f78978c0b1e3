import sys, time, torch, abcparam
sys.path.insert(0, "tests")
from conv_models import ResNet18, resnet18_widths
def build(kind):
    def make(w):
        model = ResNet18(w)
        abcparam.convert(model, getattr(abcparam, kind)(w, 16), widths=resnet18_widths(w))
        return model
    return make
for size, seeds, budget in [(8, (0,1,2,3), 0), (16, (0,1), 0)]:
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 3, size, size, generator=g), torch.randint(0, 10, (16,), generator=g))
    t=time.time()
    r = abcparam.coord_check(build("mup"), (16,32,64,128), batch, optimizer=torch.optim.Adam, lr=1e-2, seeds=seeds, budget=budget, expect="feature_learning")
    print(size, seeds, r.status, r.outcome()[:300], f"{time.time()-t:.1f}s")
