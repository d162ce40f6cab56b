"""vt.optim — SGD, Adam, AdamW over the fused kernels (core::sgd_, core::adamw_), param groups,
state_dict; `vt.optim.lr_scheduler` for LambdaLR, StepLR and cosine-with-warmup.

>>> import vibetensor as vt
>>> model = vt.nn.Linear(4, 1)
>>> opt = vt.optim.AdamW(model.parameters(), lr=1e-2)
>>> loss = model(vt.randn(8, 4)).pow(2).mean()
>>> loss.backward(); opt.step(); opt.zero_grad()
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
