"""Destinations: how one outbox row is delivered (webhook, email) and how a segment is written
to a file.

**Webhook**: `POST url` with the action's JSON payload and these headers:

    Content-Type: application/json
    Idempotency-Key: <the action's idempotency key, the same on every attempt>
    X-Panorama-Delivery: <outbox id>          X-Panorama-Attempt: <1, 2, ...>
    X-Panorama-Timestamp: <unix seconds>
    X-Panorama-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

2xx is delivered; 408, 409, 425, 429, 5xx and network errors are retried with backoff; other
4xx are permanent (dead at once). `verify_signature` is what a receiver runs.

**Email**: SMTP (plain, STARTTLS or SSL), subject and bodies rendered with Jinja2 (sandboxed)
from the payload: `profile` (every profile column), `event`, `trigger`, `segment`, `now`, and
`discount_code(prefix, length)` — a stable personal code per profile and trigger.
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import os
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import httpx
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from panorama.activate.outbox import Pending, dumps
from panorama.config import EmailDestinationConfig, WebhookDestinationConfig

SIGNATURE_HEADER = "X-Panorama-Signature"
TIMESTAMP_HEADER = "X-Panorama-Timestamp"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
USER_AGENT = "Panorama-Webhooks/0.1"
# long header values (the idempotency key) stay on one line rather than being folded
_POLICY = email.policy.SMTP.clone(max_line_length=998)
# The EHLO name: the host name, not socket.getfqdn() (smtplib's default), whose reverse DNS
# lookup can take seconds on a machine without DNS.
_HELO = socket.gethostname() or "localhost"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    permanent: bool = False
    status: int | None = None
    error: str | None = None


class DestinationError(ValueError):
    """A destination that cannot be set up (a missing secret, an unreadable template)."""


def resolve_secret(value: str | None, what: str) -> str | None:
    """`env:NAME` reads the environment variable NAME; anything else is the value itself."""
    if value is None or not value.startswith("env:"):
        return value
    name = value[4:]
    if name not in os.environ:
        raise DestinationError(f"{what}: environment variable {name} is not set")
    return os.environ[name]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(secret: str, body: bytes, timestamp: str, signature: str,
                     tolerance: float | None = 300.0, now: float | None = None) -> bool:  # fmt: skip
    """What a receiver checks: the signature matches and the timestamp is recent."""
    if tolerance is not None:
        try:
            age = abs((now or time.time()) - int(timestamp))
        except ValueError:
            return False
        if age > tolerance:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender:
    def __init__(self, name: str, config: WebhookDestinationConfig):
        self.name = name
        self.config = config
        self.secret = resolve_secret(config.secret, f"destinations.{name}.secret")
        self.client = httpx.Client(timeout=config.timeout, headers={"User-Agent": USER_AGENT},
                                   follow_redirects=False)  # fmt: skip

    def send(self, item: Pending, profile: dict) -> Outcome:
        body = dumps(item.payload)
        timestamp = str(int(time.time()))
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": item.idempotency_key,
            "X-Panorama-Delivery": str(item.id),
            "X-Panorama-Attempt": str(item.attempts + 1),
            TIMESTAMP_HEADER: timestamp,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        try:
            response = self.client.post(self.config.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return Outcome(False, error=f"timeout after {self.config.timeout:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True, status=status)
        text = response.text[:200].strip()
        permanent = 400 <= status < 500 and status not in RETRYABLE_STATUS
        return Outcome(False, permanent, status, f"HTTP {status}" + (f": {text}" if text else ""))

    def close(self) -> None:
        self.client.close()


def _discount_code(secret: str, profile_id: str | None, trigger: str | None):
    def discount_code(prefix: str = "", length: int = 8) -> str:
        import base64

        mac = hmac.new(secret.encode(), f"{profile_id}|{trigger}|{prefix}".encode(), hashlib.sha256)
        code = base64.b32encode(mac.digest()).decode().rstrip("=").replace("0", "8").replace("O", "9")
        code = code[: max(4, min(int(length), 32))]
        return f"{prefix}-{code}" if prefix else code

    return discount_code


def template_environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False,
                                keep_trailing_newline=True)  # fmt: skip


class EmailSender:
    def __init__(self, name: str, config: EmailDestinationConfig, project_root: Path, code_secret: str):
        self.name = name
        self.config = config
        self.code_secret = code_secret
        self.password = resolve_secret(config.password, f"destinations.{name}.password")
        text_env = template_environment()
        html_env = SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=True)
        try:
            self.subject = text_env.from_string(config.subject)
            self.to = text_env.from_string(config.to)
            self.text = text_env.from_string(_template_text(config.text, project_root, name)) if config.text else None
            self.html = html_env.from_string(_template_text(config.html, project_root, name)) if config.html else None
        except jinja2.TemplateSyntaxError as exc:
            raise DestinationError(f"destinations.{name}: template error line {exc.lineno}: {exc.message}") from None

    def context(self, item: Pending, profile: dict) -> dict:
        payload = item.payload
        return {
            "profile": profile, "event": payload.get("event") or {}, "trigger": payload.get("trigger"),
            "segment": payload.get("segment"), "payload": payload, "now": payload.get("occurred_at"),
            "discount_code": _discount_code(self.code_secret, item.profile_id, item.trigger),
        }  # fmt: skip

    def render(self, item: Pending, profile: dict) -> EmailMessage:
        context = self.context(item, profile)
        message = EmailMessage(policy=_POLICY)
        message["From"] = self.config.sender
        message["To"] = self.to.render(context).strip()
        message["Subject"] = " ".join(self.subject.render(context).split())
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(idstring=hashlib.sha1(item.idempotency_key.encode()).hexdigest()[:16],
                                           domain="panorama.local")  # fmt: skip
        message["X-Panorama-Idempotency-Key"] = item.idempotency_key
        if self.text is not None:
            message.set_content(self.text.render(context))
        if self.html is not None:
            html = self.html.render(context)
            if self.text is not None:
                message.add_alternative(html, subtype="html")
            else:
                message.set_content(html, subtype="html")
        return message

    def send(self, item: Pending, profile: dict) -> Outcome:
        try:
            message = self.render(item, profile)
        except jinja2.TemplateError as exc:
            return Outcome(False, True, error=f"template error: {exc}")
        if not message["To"] or "@" not in message["To"]:
            return Outcome(False, True, error=f"no email address for profile {item.profile_id} "
                                              f"(the `to` template gave {message['To']!r})")  # fmt: skip
        cfg = self.config
        try:
            if cfg.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout,
                                                      local_hostname=_HELO,
                                                      context=ssl.create_default_context())  # fmt: skip
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout, local_hostname=_HELO)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            permanent = all(500 <= c < 600 for c in codes)
            return Outcome(False, permanent, codes[0] if codes else None, f"recipient refused: {exc.recipients}")
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            return Outcome(False, permanent, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}")
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}")
        return Outcome(True, status=250)

    def close(self) -> None:
        pass


def _template_text(value: str, root: Path, name: str) -> str:
    if value.startswith("file:"):
        path = (root / value[5:].strip()).resolve()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DestinationError(f"destinations.{name}: cannot read template {path}: {exc.strerror}") from None
    return value
