"""Control characters made visible: text from a conversation file or a paste may hold terminal escape
sequences (ESC [2J clears the screen, ESC ]0; retitles the window), which must be shown, not obeyed.

Used by the exports (Markdown, text), the chat app and the REPL; JSON exports keep the text exactly.
"""

from __future__ import annotations

# C0 (but tab and newline), DEL and C1 (0x9b is a one-byte CSI on some terminals) as \xNN
ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """`text` with line ends as newlines (\\r\\n and a lone \\r) and other control characters as \\xNN."""
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(ESCAPES)
