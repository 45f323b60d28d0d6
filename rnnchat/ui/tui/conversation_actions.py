"""The app's actions on whole conversations: reset (keeping the old one), save, load, export, copy a reply, quit
(not past messages still queued).

A mixin of `ChatApp` (it uses the app's `session`, `_idle` and `_render_transcript`), kept apart so the app
module holds layout, typing and streaming.
"""

from __future__ import annotations

from functools import partial

from rnnchat.session.store import SessionError, default_name
from rnnchat.ui.tui.screens import LoadScreen, SaveScreen


class ConversationActions:
    def action_quit(self) -> None:
        """Quit (Ctrl+Q, /quit); with messages still queued behind a reply, the first press says so and a second
        quits without them (they were dropped silently)."""
        if self._queued and not self._quit_armed:
            self._quit_armed = True
            self.notify(f"{len(self._queued)} queued message(s) not sent yet: Ctrl+Q again quits without them "
                        f"(Esc stops the reply and puts them back in the box)", severity="warning")
            return
        self.exit()

    def action_reset(self) -> None:
        """A new conversation; the previous one is kept under a dated name (Ctrl+O loads it back). If it cannot be
        kept, a second Ctrl+R resets anyway, while the conversation is still the one warned about (nothing sent,
        regenerated or loaded since: a press a conversation later reset that one unkept)."""
        if not self._idle("reset"):
            return
        s, armed, self._reset_armed = self.session, self._reset_armed, None
        now = (s.conv, len(s.transcript), s.transcript[-1] if s.transcript else None)  # (objects: by identity)
        force = armed is not None and armed[0] is now[0] and armed[1] == now[1] and armed[2] is now[2]
        try:
            kept = s.reset(force=force)
        except (SessionError, OSError) as e:
            self._reset_armed = now
            self.notify(str(e).replace("/reset -f (or Ctrl+R again)", "Ctrl+R again"), severity="error")
            return
        self._render_transcript()
        self.notify("memory reset: new conversation" + (f"; the previous one is kept as {kept!r} (Ctrl+O)"
                                                        if kept else ""))

    def action_save(self) -> None:
        if self._idle("save"):
            self.push_screen(SaveScreen(default_name(), self.session.saved_names()), self._save_as)

    def _save_as(self, name: str | None) -> None:
        if name:
            self._run(partial(self.session.save, name), f"saved as {name!r}")

    def action_copy_reply(self) -> None:
        """The last reply to the system clipboard (OSC 52: most terminals, also over ssh)."""
        replies = [t.text for t in self.session.transcript if t.role == "assistant"]
        if not replies:
            self.notify("no reply to copy yet", severity="warning")
            return
        self.copy_to_clipboard(replies[-1].strip())
        self.notify("copied the last reply")

    def action_export(self) -> None:
        """The transcript as Markdown in the data directory's exports/ (`/export` chooses format and file)."""
        self._run(partial(self.session.command, "/export md"), "exported", announce=True)

    def action_load(self) -> None:
        if not self._idle("load"):
            return
        if names := self.session.saved_names():
            self.push_screen(LoadScreen(names, self.session.store), self._load)
        else:
            self.notify("no saved conversations yet (Ctrl+S saves one)")

    def _load(self, name: str | None) -> None:
        if name:
            self._run(partial(self.session.load, name), f"loaded {name!r}", rerender=True)

    def _run(self, fn, done: str, rerender: bool = False, announce: bool = False) -> None:
        """Run fn(); notify `done` (announce: fn's own message instead), or the error."""
        try:
            note = fn()
        except (SessionError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        if rerender:
            self._render_transcript()
        if announce:
            self.notify(note)
            return
        self.notify(done)
        if isinstance(note, str):  # a partial success (e.g. a load whose seq2seq memory starts fresh)
            self.notify(note, severity="warning")
