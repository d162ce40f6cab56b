"""The shape op family's frontend: public functions (exported as vt.<name>) and Tensor methods."""
from __future__ import annotations

__all__: list = []
METHODS: dict = {}  # Tensor method name -> function(self, ...)
