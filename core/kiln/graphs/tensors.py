"""Tensor descriptions stored in archives, and tensors re-created from them at LOAD."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiln.errors import NonPersistableGraph
from kiln.native import native

# torch dtype name -> (DLPack type code, bits)
_DLPACK: dict[str, tuple[int, int]] = {
    "float64": (2, 64),
    "float32": (2, 32),
    "float16": (2, 16),
    "bfloat16": (4, 16),
    "int64": (0, 64),
    "int32": (0, 32),
    "int16": (0, 16),
    "int8": (0, 8),
    "uint8": (1, 8),
    "bool": (6, 8),
}


@dataclass(frozen=True)
class TensorSpec:
    """Where a tensor's data lives and how it is viewed (strides in elements)."""

    address: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: str
    nbytes: int

    @classmethod
    def of(cls, t: Any, what: str) -> TensorSpec:
        import torch

        if not isinstance(t, torch.Tensor) or not t.is_cuda:
            raise NonPersistableGraph(f"{what} is not a CUDA tensor ({type(t).__name__})")
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DLPACK:
            raise NonPersistableGraph(f"{what} has dtype {dtype}, which kiln cannot restore yet")
        span = (
            sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if s > 0) + 1 if t.numel() else 0
        )
        return cls(t.data_ptr(), tuple(t.shape), tuple(t.stride()), dtype, span * t.element_size())

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "shape": list(self.shape),
            "strides": list(self.strides),
            "dtype": self.dtype,
            "nbytes": self.nbytes,
        }

    def restorable(self) -> bool:
        """A known dtype, one stride per dimension (what LOAD needs to view the tensor)."""
        return self.dtype in _DLPACK and len(self.shape) == len(self.strides)

    def tensor(self, device: int, owner: object) -> Any:
        """A torch tensor aliasing this memory; `owner` stays alive as long as the tensor."""
        code, bits = _DLPACK[self.dtype]
        return native().cuda_tensor(
            self.address, list(self.shape), list(self.strides), code, bits, device, owner
        )
