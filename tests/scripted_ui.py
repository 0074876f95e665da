"""A scripted :class:`providers.oauth.base.LoginUI` for the login-flow tests (Codex, Claude, Copilot)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ScriptedUI:
    """``on_open(url)`` plays the browser; ``answers`` are returned by ``ask`` in order (a callable answer gets
    the UI). Once they run out, ``ask`` raises EOFError like a user who never types: at once by default, or,
    with ``hold=True``, only after :attr:`released` is set (at most 10 s), so that a flow racing the prompt
    against a browser callback sees the prompt still open."""

    def __init__(
        self,
        answers: list[Any] | None = None,
        *,
        on_open: Callable[[str], None] | None = None,
        hold: bool = False,
    ) -> None:
        self.on_open = on_open
        self.answers = list(answers or [])
        self.hold = hold
        self.said: list[str] = []
        self.opened: list[str] = []
        self.asked: list[str] = []
        self.released = threading.Event()

    def say(self, text: str) -> None:
        self.said.append(text)

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        self.asked.append(prompt)
        if self.answers:
            answer = self.answers.pop(0)
            return str(answer(self) if callable(answer) else answer)
        if self.hold:
            self.released.wait(10)
        raise EOFError

    def open_url(self, url: str) -> None:
        self.opened.append(url)
        if self.on_open is not None:
            self.on_open(url)
