"""Terminal bytes that are not UTF-8 (a paste of Latin-1 or binary text) become U+FFFD instead of ending the app.

Textual's Linux driver decodes the terminal's input with a strict incremental UTF-8 decoder in its input
thread, so one byte such as 0xff raised UnicodeDecodeError there: the thread died, a traceback covered the
screen and the app was gone, the draft in the message box with it. The driver looks the decoder up by the
name `getincrementaldecoder` in its module, so the app's real terminal run gives it one that replaces bad
bytes. A Textual without that name is left as it is.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable


def replacing_decoder_factory(encoding: str) -> Callable[..., codecs.IncrementalDecoder]:
    """`codecs.getincrementaldecoder`, whose decoders replace undecodable bytes with U+FFFD whatever the
    caller asks for."""
    decoder = codecs.getincrementaldecoder(encoding)
    return lambda errors="strict": decoder(errors="replace")


def tolerate_bad_input_bytes() -> bool:
    """Make Textual's Linux driver replace bytes that are not UTF-8; True where it could."""
    try:
        from textual.drivers import linux_driver
    except ImportError:  # not on this platform
        return False
    if not hasattr(linux_driver, "getincrementaldecoder"):
        return False
    linux_driver.getincrementaldecoder = replacing_decoder_factory
    return True
