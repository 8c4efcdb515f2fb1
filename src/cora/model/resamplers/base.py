"""What every resampler is: ``[N, L, in_dim]`` tokens of a ``rows × cols`` grid → ``[N, L', out_dim]``."""

from __future__ import annotations

from torch import nn


class Resampler(nn.Module):
    """Base class: subclasses that change the token grid override :meth:`out_grid`."""

    def out_grid(self, rows: int, cols: int) -> tuple[int, int]:
        """The output token grid for an input grid (stitching and the overlap loss need it)."""
        return rows, cols


def to_grid(tokens, rows: int, cols: int):
    """``[N, rows*cols, D]`` → ``[N, D, rows, cols]``."""
    n, length, dim = tokens.shape
    if length != rows * cols:
        raise ValueError(f"{length} tokens do not form a {rows}×{cols} grid")
    return tokens.transpose(1, 2).reshape(n, dim, rows, cols)


def from_grid(grid):
    """``[N, D, rows, cols]`` → ``[N, rows*cols, D]``."""
    return grid.flatten(2).transpose(1, 2)


def square_side(length: int) -> int:
    side = round(length**0.5)
    if side * side != length:
        raise ValueError(f"{length} tokens are not a square grid (give rows/cols)")
    return side
