"""The app on a char-level language model of plain text (issue 16): it opens in continue mode, LM chat is
disabled with the reason shown, F2 never lands on it, and what the model writes continues the user's text."""

import pytest

from rnnchat.engine.engine import Engine
from rnnchat.models.lm import LanguageModel, LMConfig, save_lm
from rnnchat.sampling import SamplingSettings
from rnnchat.session.session import ChatSession
from rnnchat.session.transcript import Mode
from rnnchat.text import Vocab
from rnnchat.ui.tui.app import ChatApp
from textual.widgets import RadioButton

from rnnchat.ui.tui.widgets import Bubble, StreamText

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    vocab = Vocab.build_chars(["def main():\n    return 42\n"])
    model = LanguageModel(LMConfig(vocab_size=len(vocab), hidden=16, layers=1, dropout=0.0), seed=1)
    path = tmp_path_factory.mktemp("char") / "code.npz"
    save_lm(model, vocab, path, {}, corpus={"name": "text", "files": [{"name": "main.py", "bytes": 26,
                                                                        "sha256": "0" * 64}]})
    return path


async def test_a_text_model_continues_and_cannot_chat(char_lm, data_dir):
    session = ChatSession(Engine(char_lm), settings=SamplingSettings(seed=1, max_tokens=15, repeat_penalty=1.0),
                          directory=data_dir)
    app = ChatApp(session, cursor_blink=False)
    async with app.run_test(size=(110, 32)) as pilot:
        assert session.mode is Mode.CONTINUE
        assert "trained on plain text (main.py)" in " ".join(str(s.render()) for s in app.query(".unavailable"))
        for _ in range(3):
            await pilot.press("f2")
            assert session.mode is not Mode.LM
        while session.mode is not Mode.CONTINUE:
            await pilot.press("f2")
        await pilot.click("#prompt")
        await pilot.press(*"def ", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        turn = session.transcript[-1]
        tokens = session.last_tokens
        assert turn.mode is Mode.CONTINUE and 0 < len(tokens) <= 15
        assert turn.text == "".join(t.text for t in tokens)  # each character as it was drawn, nothing re-spaced
        assert all(len(t.token) == 1 and t.text == t.token for t in tokens if not t.token.startswith("<"))
        view = app.query(Bubble).last().query_one(StreamText)
        assert view._all == "def " + turn.text  # the continuation follows the text as it is, unspaced
        assert app.query_one("#mode-lm", RadioButton).disabled
