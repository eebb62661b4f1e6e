"""A development SMTP sink and a scriptable SMTP server for tests, on aiosmtpd.

`SinkServer` listens on a real socket (aiosmtpd's Controller runs its event loop
in a background thread), accepts mail, optionally writes every accepted message
to a folder as an `.eml` file, and decides its replies per recipient:

1. scripted actions for that address (`server.script(address, *actions)`), one
   action consumed per attempt (per RCPT for that address), in order;
2. when none is left, the policy (`DefaultPolicy`: the magic local parts in
   `MAGIC_RULES`; e.g. `unknown.bob@example.test` is refused with 550 5.1.1).

Action string grammar (case-insensitive stage and keywords):

    action  = [stage ":"] body          stage omitted: the caller's default stage
    stage   = "connect" | "mail" | "rcpt" | "data"
    body    = reply | "hang" [SP seconds] | "drop"
    reply   = 3DIGIT [SP text]          text may contain "{address}"

    "rcpt:451 4.3.0 Try later"   refuse at RCPT (this recipient only)
    "data:552 5.3.4 Too big"     accept at RCPT, refuse the message after DATA
    "rcpt:hang 2"                answer nothing for 2 s, then close the connection
    "data:drop"                  read the message, then close without answering

A hang ends early, without an answer, when the client goes away; the sleep is
asynchronous, so other connections keep being served meanwhile.

An SMTP transaction gets one reply after DATA, so when several of its accepted
recipients carry a data-stage action, the first one (in RCPT order) decides and
the others are consumed all the same. A message refused, hung or dropped at DATA
counts as received by nobody.

Maildir: one `.eml` file per accepted message (per transaction, not per
recipient), named `<UTC time>-<sequence>-<first accepted recipient>.eml`, e.g.
`20250101T120000.123456Z-000001-ada@example.test.eml`. Its content is the message
exactly as received, preceded by two headers giving the envelope, which is not
otherwise visible (Bcc): `X-Sink-Envelope-From` and `X-Sink-Envelope-To`. Files
are written under a temporary name and renamed, so a reader never sees half of one.

Addresses are compared case-insensitively: scripts, greylisting and the counters
use the lower-cased address as key.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.policy
import hmac
import itertools
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

logger = logging.getLogger(__name__)

Stage = Literal["connect", "mail", "rcpt", "data"]
STAGES: tuple[Stage, ...] = ("connect", "mail", "rcpt", "data")

# Long enough to outlast any sane client timeout; a hang ends sooner anyway when the
# client gives up and closes the connection.
DEFAULT_HANG_SECONDS = 60.0
SERVER_NAME = "emailer-sink.localhost"
IDENT = "Emailer SMTP sink"
AUTH_REQUIRED_REPLY = "530 5.7.0 Authentication required"


# --- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with `code text` at `stage`; a 2xx code accepts."""

    stage: Stage
    code: int
    text: str = ""

    def __post_init__(self) -> None:
        _check_stage(self.stage)
        if not (200 <= self.code <= 299 or 400 <= self.code <= 599):
            raise ValueError(f"reply code must be 2xx, 4xx or 5xx, not {self.code}")
        if "\r" in self.text or "\n" in self.text:
            raise ValueError("reply text must be one line")

    @property
    def accepts(self) -> bool:
        return 200 <= self.code <= 299

    def line(self, address: str = "") -> str:
        text = self.text.replace("{address}", address)
        return f"{self.code} {text}" if text else str(self.code)


@dataclass(frozen=True, slots=True)
class Hang:
    """Answer nothing for `seconds`, then close the connection."""

    stage: Stage
    seconds: float = DEFAULT_HANG_SECONDS

    def __post_init__(self) -> None:
        _check_stage(self.stage)
        if self.seconds < 0:
            raise ValueError("hang seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the TCP connection without answering."""

    stage: Stage

    def __post_init__(self) -> None:
        _check_stage(self.stage)


Action = Reply | Hang | Drop
ActionSpec = Action | str

_ACTION_RE = re.compile(
    r"""^\s*(?:(?P<stage>[a-z]+)\s*:\s*)?
    (?:(?P<code>\d{3})(?:\s+(?P<text>.*?))?
      |(?P<hang>hang)(?:\s+(?P<seconds>\d+(?:\.\d*)?|\.\d+))?
      |(?P<drop>drop))\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")


def parse_action(spec: ActionSpec, default_stage: Stage = "rcpt") -> Action:
    """An action object from itself or from its string form (see the module doc)."""
    if isinstance(spec, Reply | Hang | Drop):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"an action is a Reply, Hang, Drop or str, not {type(spec).__name__}")
    match = _ACTION_RE.match(spec)
    if match is None:
        raise ValueError(f"cannot parse SMTP action {spec!r}")
    stage = (match["stage"] or default_stage).lower()
    _check_stage(stage)
    if match["code"]:
        return Reply(stage, int(match["code"]), (match["text"] or "").strip())  # type: ignore[arg-type]
    if match["hang"]:
        seconds = float(match["seconds"]) if match["seconds"] else DEFAULT_HANG_SECONDS
        return Hang(stage, seconds)  # type: ignore[arg-type]
    return Drop(stage)  # type: ignore[arg-type]


def _parse_for(specs: Iterable[ActionSpec], allowed: tuple[Stage, ...], default: Stage) -> list[Action]:
    actions = [parse_action(spec, default) for spec in specs]
    for action in actions:
        if action.stage not in allowed:
            raise ValueError(f"{action!r}: stage must be one of {', '.join(allowed)} here")
    return actions


# --- policy -------------------------------------------------------------------------


class Policy(Protocol):
    """Decides the reply to a recipient once its scripted actions are used up.

    `attempt` counts the RCPTs for that (lower-cased) address on this server, the
    current one included. `None` accepts.
    """

    def decide(self, address: str, attempt: int) -> Action | None: ...

    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MagicRule:
    prefix: str
    reply: str
    when: str


MAGIC_RULES: tuple[MagicRule, ...] = (
    MagicRule("unknown", "550 5.1.1 <{address}>: Recipient address rejected: User unknown", "at RCPT"),
    MagicRule("full", "552 5.2.2 Mailbox full", "at RCPT"),
    MagicRule("greylist", "451 4.7.1 Greylisted, try again later", "first RCPT only, then 250"),
    MagicRule("reject", "554 5.7.1 Message rejected as spam", "at RCPT"),
)


def local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


class DefaultPolicy:
    """The magic local parts of `MAGIC_RULES`, matched as case-insensitive prefixes."""

    def __init__(self, rules: Iterable[MagicRule] = MAGIC_RULES) -> None:
        self.rules = tuple(rules)
        self._replies = {rule.prefix: parse_action(rule.reply, "rcpt") for rule in self.rules}
        self._greylisted: set[str] = set()

    def decide(self, address: str, attempt: int) -> Action | None:
        local = local_part(address).lower()
        for rule in self.rules:
            if local.startswith(rule.prefix):
                if rule.prefix == "greylist":
                    # Keyed on the address, not on `attempt`: an attempt answered by a
                    # script does not count as the greylisted first try.
                    if address in self._greylisted:
                        return None
                    self._greylisted.add(address)
                return self._replies[rule.prefix]
        return None

    def reset(self) -> None:
        self._greylisted.clear()


class AcceptAllPolicy:
    """Accepts every recipient (scripts still apply)."""

    def decide(self, address: str, attempt: int) -> Action | None:
        return None

    def reset(self) -> None:
        pass


# --- records ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    """A message accepted after DATA, with only its accepted recipients."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    peer: Any
    received_at: datetime
    eml_path: Path | None = None
    auth_login: str | None = None
    mail_options: tuple[str, ...] = ()

    @cached_property
    def message(self) -> EmailMessage:
        """`raw` parsed, with LF line endings (SMTP's CRLF would show in every text part).

        Parsed on first use: parsing 20,000 messages nobody looks at would cost.
        """
        return BytesParser(policy=email.policy.default).parsebytes(  # type: ignore[return-value]
            self.raw.replace(b"\r\n", b"\n")
        )

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header (name, value) in order, repeated names included."""
        return [(name, str(value)) for name, value in self.message.items()]

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.message.get(name)
        return default if value is None else str(value)

    @property
    def subject(self) -> str | None:
        return self.header("Subject")


@dataclass(frozen=True, slots=True)
class SinkEvent:
    """One decision of the server: `kind` is "reply", "hang" or "drop"."""

    stage: Stage | Literal["auth"]
    address: str
    kind: Literal["reply", "hang", "drop"]
    code: int | None = None
    text: str = ""
    peer: Any = None

    @property
    def accepted(self) -> bool:
        return self.code is not None and 200 <= self.code <= 299

    def describe(self) -> str:
        what = f"{self.code} {self.text}" if self.kind == "reply" else f"{self.kind} {self.text}"
        verdict = "accepted" if self.accepted else "refused" if self.kind == "reply" else "no answer"
        return f"{self.stage.upper()} {self.address or '-'} {verdict}: {what.strip()}"


@dataclass(frozen=True, slots=True)
class AuthAttempt:
    mechanism: str
    login: str
    success: bool
    peer: Any = None


@dataclass
class _Counters:
    connections: int = 0
    messages: int = 0
    auth_commands: int = 0
    received: collections.Counter[str] = field(default_factory=collections.Counter)
    rcpt_attempts: collections.Counter[str] = field(default_factory=collections.Counter)


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on `host` (another process may take it before you do)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _slug(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", address)[:80] or "unknown"


# --- aiosmtpd glue ------------------------------------------------------------------


class _SinkSession(Session):
    # aiosmtpd sets this deprecated property on every successful AUTH, and its
    # getter/setter log a warning each time; a plain attribute keeps logs clean.
    login_data: Any = None


class _SinkEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.data_actions: list[tuple[str, Action]] = []


class _SinkSMTP(SMTP):
    """aiosmtpd's protocol, plus connect-stage scripts and connection bookkeeping."""

    def __init__(self, sink: SinkServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def _create_session(self) -> Session:
        return _SinkSession(self.loop)

    def _create_envelope(self) -> Envelope:
        return _SinkEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sink._connection_opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._connection_closed(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        action = self.sink._next_connect_action()
        if action is None or (isinstance(action, Reply) and action.accepts):
            await super()._handle_client()
            return
        peer = self.session.peer if self.session else None
        if isinstance(action, Reply):
            # A refusing greeting (421/554), then hang up as real servers do.
            self.sink._emit("connect", "", "reply", action.code, action.line(), peer)
            await self.push(action.line())
            await _drop(self)
        await _perform(self, action, "", peer)

    async def smtp_AUTH(self, arg: str) -> None:
        self.sink._auth_command()
        await super().smtp_AUTH(arg)


async def _drop(server: SMTP) -> NoReturn:
    if server.transport is not None:
        server.transport.close()
    # Ends aiosmtpd's session task the way a lost connection does, with no reply
    # pushed to a closed transport.
    raise asyncio.CancelledError


async def _perform(server: _SinkSMTP, action: Hang | Drop, address: str, peer: Any) -> NoReturn:
    if isinstance(action, Hang):
        server.sink._emit(action.stage, address, "hang", None, f"{action.seconds:g}s", peer)
        await asyncio.sleep(action.seconds)
    else:
        server.sink._emit(action.stage, address, "drop", None, "", peer)
    await _drop(server)


class _Handler:
    """aiosmtpd hooks; the state lives in the SinkServer."""

    def __init__(self, sink: SinkServer) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.sink.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        sink = self.sink
        if sink.auth is not None and sink.auth_required and not session.authenticated:
            sink._emit("mail", address, "reply", 530, AUTH_REQUIRED_REPLY[4:], session.peer)
            return AUTH_REQUIRED_REPLY
        action = sink._next_sender_action()
        if isinstance(action, Hang | Drop):
            await _perform(server, action, address, session.peer)
        if action is not None and not action.accepts:
            line = action.line(address)
            sink._emit("mail", address, "reply", action.code, line[4:], session.peer)
            return line
        # A hook that answers must also do what aiosmtpd does by default.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return action.line(address) if action is not None else "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: _SinkSMTP,
        session: Session,
        envelope: _SinkEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        sink = self.sink
        action = sink._next_rcpt_action(address)
        if action is not None and action.stage == "data":
            envelope.data_actions.append((address, action))
            action = None
        if isinstance(action, Hang | Drop):
            await _perform(server, action, address, session.peer)
        if action is not None and not action.accepts:
            line = action.line(address)
            sink._emit("rcpt", address, "reply", action.code, line[4:], session.peer)
            return line
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        line = action.line(address) if action is not None else "250 2.1.5 OK"
        sink._emit("rcpt", address, "reply", int(line[:3]), line[4:], session.peer)
        return line

    async def handle_DATA(self, server: _SinkSMTP, session: Session, envelope: _SinkEnvelope) -> str:
        sink = self.sink
        rcpts = ", ".join(envelope.rcpt_tos)
        action = envelope.data_actions[0][1] if envelope.data_actions else None
        if isinstance(action, Hang | Drop):
            await _perform(server, action, rcpts, session.peer)
        if action is not None and not action.accepts:
            line = action.line(envelope.data_actions[0][0])
            sink._emit("data", rcpts, "reply", action.code, line[4:], session.peer)
            return line
        try:
            seq = sink._accept_message(envelope, session)
        except OSError as exc:
            logger.error("smtp sink: cannot write the message to the maildir: %s", exc)
            sink._emit("data", rcpts, "reply", 451, "4.3.0 Cannot store the message", session.peer)
            return "451 4.3.0 Cannot store the message"
        line = action.line(rcpts) if action is not None else f"250 2.0.0 OK: queued as {seq}"
        sink._emit("data", rcpts, "reply", int(line[:3]), line[4:], session.peer)
        return line


class _Controller(Controller):
    def __init__(self, sink: SinkServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        return _SinkSMTP(self.sink, self.handler, **self.SMTP_kwargs)

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            if self.server is None and not self.loop.is_closed():
                self.loop.close()  # binding failed: the loop never ran
            # aiosmtpd sets the event only on success, so a port in use would
            # otherwise surface after the whole ready_timeout.
            ready_event.set()

    def _trigger_server(self) -> None:
        if self.server is None:
            raise self._thread_exception or RuntimeError("the SMTP sink did not start")
        # With port 0 the OS picked the port: aiosmtpd's start-up probe must use it.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


# --- the server ---------------------------------------------------------------------


class SinkServer:
    """An SMTP server on a real socket, for development and tests.

    `port=0` picks a free port (read `.port` after `start()`). `maildir` writes each
    accepted message as an `.eml` file. `keep_messages` keeps `ReceivedMessage`s and
    `SinkEvent`s in memory (the newest `max_kept` of each when set); the counters are
    kept in any case. `auth=(user, password)` advertises AUTH PLAIN and LOGIN without
    TLS, answers 535 5.7.8 to wrong credentials and, with `auth_required`, 530 to MAIL
    before a successful AUTH. `on_event` is called (in the server thread) with every
    `SinkEvent`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        maildir: str | os.PathLike[str] | None = None,
        keep_messages: bool = True,
        max_kept: int | None = None,
        policy: Policy | None = None,
        auth: tuple[str, str] | None = None,
        auth_required: bool = True,
        data_size_limit: int = 32 * 1024 * 1024,
        on_event: Callable[[SinkEvent], None] | None = None,
        pipelining: bool = True,
    ) -> None:
        self.host = host
        # Advertise PIPELINING (RFC 2920), as real servers do; aiosmtpd reads
        # commands line by line, so pipelined commands are answered in order.
        self.pipelining = pipelining
        self.port = port
        self.maildir = Path(maildir) if maildir is not None else None
        self.keep_messages = keep_messages
        self.policy: Policy = policy if policy is not None else DefaultPolicy()
        self.auth = auth
        self.auth_required = auth_required
        self.data_size_limit = data_size_limit
        self.on_event = on_event
        # Re-entrant: a custom policy may call back into the server while it decides.
        self._lock = threading.RLock()
        self._message_added = threading.Condition(self._lock)
        self._messages: collections.deque[ReceivedMessage] = collections.deque(maxlen=max_kept)
        self._events: collections.deque[SinkEvent] = collections.deque(maxlen=max_kept)
        self._auth_attempts: list[AuthAttempt] = []
        self._counters = _Counters()
        self._scripts: dict[str, collections.deque[Action]] = {}
        self._sender_script: collections.deque[Action] = collections.deque()
        self._sender_refusal: Reply | None = None
        self._connect_script: collections.deque[Action] = collections.deque()
        self._sequence = itertools.count(1)
        self._live: set[_SinkSMTP] = set()
        self._controller: _Controller | None = None
        self._starting = False

    # -- lifecycle --

    def start(self) -> SinkServer:
        if self._controller is not None:
            raise RuntimeError("the SMTP sink is already running")
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {
            "server_hostname": SERVER_NAME,  # else aiosmtpd calls getfqdn() per connection
            "ident": IDENT,
            "data_size_limit": self.data_size_limit,
            "enable_SMTPUTF8": True,
        }
        if self.auth is not None:
            kwargs.update(auth_require_tls=False, authenticator=self._authenticate)
        controller = _Controller(self, _Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._starting = True
        try:
            controller.start()
        finally:
            self._starting = False
        self.port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return
        with contextlib.suppress(Exception):
            # Close open sessions (hanging ones included) before the loop goes away,
            # so no task is left pending and no socket lingers.
            asyncio.run_coroutine_threadsafe(self._shutdown(controller), controller.loop).result(5)
        controller.stop()

    async def _shutdown(self, controller: _Controller) -> None:
        if controller.server is not None:
            controller.server.close()
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SinkServer {self.host}:{self.port} {state}>"

    def reset(self) -> None:
        """Forget messages, events, counters, scripts and greylisting (files stay)."""
        with self._lock:
            self._messages.clear()
            self._events.clear()
            self._auth_attempts.clear()
            self._counters = _Counters()
            self._scripts.clear()
            self._sender_script.clear()
            self._sender_refusal = None
            self._connect_script.clear()
            self.policy.reset()

    # -- scripting --

    def script(self, address: str, *actions: ActionSpec) -> None:
        """Queue actions for `address`, one per attempt (RCPT); stage defaults to rcpt."""
        parsed = _parse_for(actions, ("rcpt", "data"), "rcpt")
        with self._lock:
            self._scripts.setdefault(address.lower(), collections.deque()).extend(parsed)

    def script_sender(self, *actions: ActionSpec) -> None:
        """Queue actions for the next MAIL FROM commands, one per command, any sender."""
        parsed = _parse_for(actions, ("mail",), "mail")
        with self._lock:
            self._sender_script.extend(parsed)

    def refuse_sender(self, reply: str = "553 5.7.1 Sender not allowed", *, times: int | None = None) -> None:
        """Refuse MAIL FROM with `reply`: every time until `accept_sender()`, or `times` times."""
        action = parse_action(reply, "mail")
        if not isinstance(action, Reply) or action.stage != "mail" or action.accepts:
            raise ValueError("refuse_sender needs a 4xx or 5xx reply, e.g. '553 5.7.1 Sender not allowed'")
        with self._lock:
            if times is None:
                self._sender_refusal = action
            else:
                self._sender_script.extend([action] * times)

    def accept_sender(self) -> None:
        with self._lock:
            self._sender_refusal = None
            self._sender_script.clear()

    def script_connect(self, *actions: ActionSpec) -> None:
        """Queue actions for the next connections, one per connection: e.g. "421 4.3.2 Busy", "drop"."""
        parsed = _parse_for(actions, ("connect",), "connect")
        with self._lock:
            self._connect_script.extend(parsed)

    def pending_script(self, address: str) -> list[Action]:
        with self._lock:
            return list(self._scripts.get(address.lower(), ()))

    # -- what happened --

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the accepted messages kept in memory, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def events(self) -> list[SinkEvent]:
        with self._lock:
            return list(self._events)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._lock:
            return list(self._auth_attempts)

    @property
    def auth_attempted(self) -> bool:
        """Whether any client sent AUTH (even to a server that offers none)."""
        with self._lock:
            return self._counters.auth_commands > 0

    @property
    def connection_count(self) -> int:
        with self._lock:
            return self._counters.connections

    @property
    def message_count(self) -> int:
        """Messages accepted after DATA (kept in memory or not)."""
        with self._lock:
            return self._counters.messages

    def received_count_by_address(self) -> dict[str, int]:
        """How many accepted messages each (lower-cased) address was an accepted recipient of."""
        with self._lock:
            return dict(self._counters.received)

    def received_count(self, address: str) -> int:
        with self._lock:
            return self._counters.received[address.lower()]

    def rcpt_attempts_by_address(self) -> dict[str, int]:
        """How many RCPTs named each (lower-cased) address, whatever the answer."""
        with self._lock:
            return dict(self._counters.rcpt_attempts)

    def rcpt_attempts(self, address: str) -> int:
        with self._lock:
            return self._counters.rcpt_attempts[address.lower()]

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least `count` messages were accepted; False on timeout."""
        with self._message_added:
            return self._message_added.wait_for(lambda: self._counters.messages >= count, timeout)

    def eml_files(self) -> list[Path]:
        if self.maildir is None or not self.maildir.is_dir():
            return []
        return sorted(self.maildir.glob("*.eml"))

    # -- called from the server thread --

    def _connection_opened(self, protocol: _SinkSMTP) -> None:
        with self._lock:
            self._live.add(protocol)
            if not self._starting:  # aiosmtpd's own start-up probe is no client
                self._counters.connections += 1

    def _connection_closed(self, protocol: _SinkSMTP) -> None:
        with self._lock:
            self._live.discard(protocol)

    def _auth_command(self) -> None:
        with self._lock:
            self._counters.auth_commands += 1

    def _next_connect_action(self) -> Action | None:
        if self._starting:
            return None
        with self._lock:
            return self._connect_script.popleft() if self._connect_script else None

    def _next_sender_action(self) -> Action | None:
        with self._lock:
            if self._sender_script:
                return self._sender_script.popleft()
            return self._sender_refusal

    def _next_rcpt_action(self, address: str) -> Action | None:
        key = address.lower()
        with self._lock:
            self._counters.rcpt_attempts[key] += 1
            attempt = self._counters.rcpt_attempts[key]
            queue = self._scripts.get(key)
            if queue:
                return queue.popleft()
            return self.policy.decide(key, attempt)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.auth is not None and isinstance(auth_data, LoginPassword)
        login = auth_data.login.decode("utf-8", "replace")
        user, password = self.auth
        ok = hmac.compare_digest(auth_data.login, user.encode()) and hmac.compare_digest(
            auth_data.password, password.encode()
        )
        with self._lock:
            self._auth_attempts.append(AuthAttempt(mechanism, login, ok, session.peer))
        self._emit("auth", login, "reply", 235 if ok else 535, mechanism, session.peer)
        # handled=False: aiosmtpd then answers 235 2.7.0 or 535 5.7.8 itself.
        return AuthResult(success=ok, handled=False, auth_data=login)

    def _accept_message(self, envelope: Envelope, session: Session) -> int:
        raw = envelope.original_content or b""
        rcpts = tuple(envelope.rcpt_tos)
        mail_from = envelope.mail_from or ""
        received_at = datetime.now(UTC)
        seq = next(self._sequence)
        eml_path = self._write_eml(received_at, seq, mail_from, rcpts, raw) if self.maildir else None
        with self._lock:
            self._counters.messages += 1
            self._counters.received.update(rcpt.lower() for rcpt in rcpts)
            if self.keep_messages:
                self._messages.append(
                    ReceivedMessage(
                        mail_from=mail_from,
                        rcpt_tos=rcpts,
                        raw=raw,
                        peer=session.peer,
                        received_at=received_at,
                        eml_path=eml_path,
                        auth_login=session.auth_data if session.authenticated else None,
                        mail_options=tuple(envelope.mail_options),
                    )
                )
            self._message_added.notify_all()
        return seq

    def _write_eml(
        self, received_at: datetime, seq: int, mail_from: str, rcpts: tuple[str, ...], raw: bytes
    ) -> Path:
        assert self.maildir is not None
        stem = f"{received_at:%Y%m%dT%H%M%S.%fZ}-{seq:06d}-{_slug(rcpts[0] if rcpts else '')}"
        envelope = (
            f"X-Sink-Envelope-From: <{mail_from}>\r\n"
            f"X-Sink-Envelope-To: {', '.join(f'<{rcpt}>' for rcpt in rcpts)}\r\n"
        ).encode()
        tmp = self.maildir / f".{stem}.tmp"
        tmp.write_bytes(envelope + raw)
        path = self.maildir / f"{stem}.eml"
        for n in itertools.count(1):
            if not path.exists():
                break
            path = self.maildir / f"{stem}-{n}.eml"  # another sink wrote into the same folder
        os.replace(tmp, path)
        return path

    def _emit(self, stage: Any, address: str, kind: Any, code: int | None, text: str, peer: Any) -> None:
        if not self.keep_messages and self.on_event is None:
            return  # keep the benchmark path allocation-free
        event = SinkEvent(stage, address, kind, code, text, peer)
        if self.keep_messages:
            with self._lock:
                self._events.append(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken observer must not break the SMTP session
                logger.exception("smtp sink: on_event callback failed")


def magic_table() -> Iterator[tuple[str, str, str]]:
    """(local part prefix, reply, when) rows for documentation and the command's banner."""
    for rule in MAGIC_RULES:
        yield (f"{rule.prefix}…", rule.reply.replace("{address}", "addr"), rule.when)
