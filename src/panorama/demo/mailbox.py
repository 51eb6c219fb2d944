"""The demo's local mailbox: an SMTP server on 127.0.0.1 that saves every message it receives
as an `.eml` file, so the demo's email triggers (abandoned cart, sales alerts) can be read
without a real mail server."""

from __future__ import annotations

import itertools
import time
from email import message_from_bytes, policy
from pathlib import Path


class _SaveToFolder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.folder / f"{stamp}-{next(self.counter):05d}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def start_mailbox(folder: Path, port: int):
    """Start the mailbox (returns the running controller; `.stop()` ends it). Raises OSError
    when the port is taken."""
    from aiosmtpd.controller import Controller

    controller = Controller(_SaveToFolder(folder), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def read_mailbox(folder: Path) -> list[dict]:
    """The saved messages, oldest first: file, from, to, subject, text."""
    messages = []
    for path in sorted(folder.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        body = message.get_body(("plain", "html"))
        messages.append({"file": path.name, "from": message["From"], "to": message["To"],
                         "subject": message["Subject"], "text": body.get_content() if body else ""})  # fmt: skip
    return messages
