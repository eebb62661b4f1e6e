"""A TCP proxy for fault tests: in front of a real PostgreSQL or Redis, it forwards
bytes until told to stall (connections stay open, nothing moves: what a hung server
or a black-holed network looks like to a client) or to cut (every connection closed,
new ones refused), and forwards again on resume.

Threads and the standard library only, so worker and web tests alike can use it:

    with StallProxy("127.0.0.1", 5432).start() as proxy:
        ...  # point the client at 127.0.0.1:proxy.port
        proxy.stall()
        proxy.resume()
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from types import TracebackType

# How often a pump wakes to notice stall/resume/close while no bytes arrive.
_TICK = 0.05
_CHUNK = 65536


class _Pair:
    """One client connection and its connection to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def close(self, *, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if reset:
                # SO_LINGER 0: close() sends an RST, as a dropped network path or a
                # killed server looks to the peer.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()


class StallProxy:
    """A TCP proxy on 127.0.0.1 in front of target_host:target_port that can stall or cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        # Set while bytes may flow; cleared by stall().
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- control -------------------------------------------------------------------

    def start(self) -> StallProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(_TICK)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def stall(self) -> None:
        """Stop forwarding bytes both ways; keep every connection open; new connections
        are accepted but nothing is forwarded."""
        self._refusing = False
        self._flowing.clear()

    def cut(self) -> None:
        """Close every current connection (RST) and refuse new ones until resume()."""
        self._refusing = True
        self._flowing.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close(reset=True)

    def resume(self) -> None:
        """Forward normally again; the held bytes of stalled connections flow."""
        self._refusing = False
        self._flowing.set()

    def close(self) -> None:
        self._stopped.set()
        self._flowing.set()  # wake the pumps so they see the stop
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> StallProxy:
        return self if self._listener is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- machinery -------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"stallproxy-{self.port}")
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if self._refusing:
                # Refused: an RST at once, as from a port nothing listens on.
                _Pair(client, None).close(reset=True)
                continue
            self._spawn(self._connect, client)

    def _connect(self, client: socket.socket) -> None:
        # A stalled proxy accepts but does not even reach the target before resume:
        # the client's connection set-up hangs as it would behind a black hole.
        pair = _Pair(client, None)
        with self._lock:
            self._pairs.append(pair)
        while not self._flowing.wait(_TICK):
            if self._stopped.is_set() or pair.closed.is_set():
                return
        if pair.closed.is_set() or self._stopped.is_set():
            return
        try:
            pair.upstream = socket.create_connection((self.target_host, self.target_port), timeout=5)
        except OSError:
            self._forget(pair, reset=True)
            return
        if pair.closed.is_set():  # cut while connecting
            with contextlib.suppress(OSError):
                pair.upstream.close()
            return
        self._pump(pair)

    def _pump(self, pair: _Pair) -> None:
        """Move bytes both ways in one thread; while stalled, read nothing (the bytes wait
        in the kernel's buffers and flow on resume)."""
        assert pair.upstream is not None
        peers = {pair.client: pair.upstream, pair.upstream: pair.client}
        try:
            while not pair.closed.is_set() and not self._stopped.is_set():
                if not self._flowing.wait(_TICK):
                    continue
                readable, _, _ = select.select(list(peers), [], [], _TICK)
                if not self._flowing.is_set():
                    continue  # stalled between the wait and the select: read nothing
                for sock in readable:
                    data = sock.recv(_CHUNK)
                    if not data:
                        self._forget(pair)
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket cut meanwhile
            self._forget(pair)

    def _forget(self, pair: _Pair, *, reset: bool = False) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        pair.close(reset=reset)
