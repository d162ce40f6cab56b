"""Embedding: a lookup table (num_embeddings, embedding_dim) indexed by integer tensors of any
shape; (...) -> (..., embedding_dim). Weight ~ N(0, 1) as in torch, padding_idx row zeroed (its
gradient is still accumulated: unlike torch, padding_idx does not mask the gradient)."""
from __future__ import annotations

from ...autograd import no_grad
from ...creation import empty
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter


class Embedding(Module):
    """
    >>> import vibetensor as vt
    >>> vt.nn.Embedding(10, 3)(vt.tensor([[1, 2], [3, 4]])).shape
    (2, 2, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, device=None,
                 dtype=None, _weight=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within "
                                 f"num_embeddings {num_embeddings}")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        if _weight is not None:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight has shape {tuple(_weight.shape)}, expected "
                                 f"{(num_embeddings, embedding_dim)}")
            self.weight = Parameter(_weight)
        else:
            self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype,
                                          device=device))
            self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0.0)

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None):
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: expected a 2-D tensor, got shape "
                             f"{tuple(embeddings.shape)}")
        m = cls(embeddings.shape[0], embeddings.shape[1], padding_idx=padding_idx,
                _weight=embeddings)
        m.weight.requires_grad_(not freeze)
        return m

    def forward(self, input):
        if not isinstance(input, Tensor):
            raise TypeError(f"{self._describe()}: expected a Tensor of indices, got "
                            f"{type(input).__name__}")
        if input.dtype.is_floating_point or input.dtype.name == "bool":
            raise TypeError(f"{self._describe()}: expected integer indices (int64 or int32), got "
                            f"{input.dtype}")
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
