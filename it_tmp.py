import sys, torch, abcparam, mup
sys.path.insert(0, "tests")
from conv_models import ResNet18, mup_resnet18
torch.manual_seed(0)
x = torch.randn(8, 3, 8, 8); y = torch.randint(0, 10, (8,))
ins = abcparam.inspect(lambda w: ResNet18(w), optimizer=torch.optim.Adam, lr=1e-2, widths=(8, 16, 32))
print(ins)
ins = abcparam.inspect(lambda w: mup_resnet18(w), optimizer=mup.MuAdam, lr=1e-2, widths=(8, 16, 32))
print(ins)
