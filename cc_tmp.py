import torch, abcparam
from torch import nn
def plain(w, norm=True):
    B = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
    return nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), B(w), nn.ReLU(),
                         nn.Conv2d(w, w, 3, padding=1, groups=w, bias=False), B(w), nn.ReLU(),
                         nn.Conv2d(w, 2*w, 3, stride=2, padding=1, bias=False), B(2*w), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2*w, 10))
m = plain(64)
r = abcparam.convert(m, abcparam.mup(64, 16), widths=[64, 128])
print(r); print(m)
