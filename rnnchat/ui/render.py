"""What both UIs show the same way, as plain data and text: message text with its control characters visible,
the sentiment score bar and the attention grid of a seq2seq reply (the app draws the grid as a heat map, the
REPL as text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnnchat.control_chars import visible
from rnnchat.engine.tokens import Token

TAB = "    "


def on_screen(text: str) -> str:
    """Text as a terminal may show it: escape sequences visible, not obeyed (a loaded conversation holding
    ESC [2J cleared the screen), and tabs as spaces (a raw tab moves the cursor past the app's layout)."""
    return visible(text).replace("\t", TAB)


NO_ATTENTION = "no seq2seq reply yet: attention comes with replies in seq2seq chat mode"


def score_bar(score: float, cells: int = 5, fill: str = "█") -> tuple[str, str]:
    """The (left, right) halves of a bar centred on 0 and filled towards the score's side ([-1, 1])."""
    n = round(min(abs(score), 1.0) * cells)
    blank = " " * cells
    return (" " * (cells - n) + fill * n, blank) if score < 0 else (blank, fill * n + " " * (cells - n))


@dataclass(frozen=True)
class AttentionGrid:
    """A row per reply token, a column per word of the user's turn (encoder tokens)."""

    source: tuple[str, ...]
    tokens: list[str]
    weights: list[list[float]]  # rows of attention weights (each sums to 1)

    @property
    def top(self) -> float:
        """The largest weight of the grid (the heat map's scale)."""
        return max(max(row) for row in self.weights) or 1.0


def attention_grid(tokens: Sequence[Token]) -> AttentionGrid | None:
    """The grid of the reply tokens that carry attention (seq2seq replies), or None if none does."""
    rows = [t for t in tokens if t.attention is not None]
    if not rows:
        return None
    return AttentionGrid(rows[0].source, [t.token for t in rows], [[float(w) for w in t.attention] for t in rows])


def attention_text(grid: AttentionGrid | None) -> str:
    """The grid as text: each cell the weight in percent; the word each token attended to most is marked *."""
    if grid is None:
        return NO_ATTENTION
    left = max(len(t) for t in grid.tokens)
    widths = [max(4, len(w)) for w in grid.source]
    lines = [" " * left + "  " + " ".join(w.rjust(n) for w, n in zip(grid.source, widths))]
    for token, row in zip(grid.tokens, grid.weights):
        best = max(range(len(row)), key=row.__getitem__)
        cells = (f"{round(100 * a)}{'*' if j == best else ' '}".rjust(n) for j, (a, n) in enumerate(zip(row, widths)))
        lines.append(token.rjust(left) + "  " + " ".join(cells))
    return "\n".join(lines)
