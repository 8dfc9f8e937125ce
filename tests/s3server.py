"""A real S3-compatible server on 127.0.0.1 for the shipper's tests, and a network the tests can cut.

- :class:`MotoServer`: moto's standalone server (``python -m moto.server``) as a subprocess
  on a free port. It speaks S3 over HTTP; the shipper reaches it through s3fs/aiobotocore
  and the tests inspect it with boto3, both over real sockets. It keeps objects in memory,
  so killing it loses them, as a store that lost its data would.
- :class:`FaultProxy`: a TCP relay between the shipper and the server. It can throttle the
  upload direction (so a test can act while a transfer is in flight), count the bytes sent,
  and cut the network: reset every open connection and refuse new ones (what a client sees
  when the link or the server goes away), then bring it back. The server keeps its state
  across a cut.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "robovid-test",
    "AWS_SECRET_ACCESS_KEY": "robovid-test-secret",
    "AWS_DEFAULT_REGION": REGION,
}
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class MotoServer:
    """moto's S3 server in a subprocess on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> MotoServer:
        for _attempt in range(5):
            self.port = port or free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_listening(self.port, self.process, START_TIMEOUT_S)
                return self
            except RuntimeError:
                if port is not None:
                    raise
        raise RuntimeError("could not start moto's server on a free port")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=30)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = f"robovid-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.kill()


class FaultProxy:
    """A TCP relay from 127.0.0.1:{port} to an upstream port, with a switch and a throttle."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.sent_bytes = 0
        """Bytes relayed from clients to the server (the upload direction)."""
        self.upload_rate: float | None = None
        """Bytes per second allowed towards the server (None: unlimited)."""
        self.cut_after_bytes: int | None = None
        """Cut the network once this many more bytes were sent (None: never)."""
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._spawn(self._accept_loop, listener)
        return self

    def cut(self) -> None:
        """Drop the network: reset every open connection, refuse new ones (until :meth:`restore`)."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in connections:
            _reset(conn)

    def restore(self) -> None:
        if self._listener is None and not self._closed:
            self.cut_after_bytes = None
            self.start()

    def close(self) -> None:
        self._closed = True
        self.cut()
        for thread in self._threads:
            thread.join(timeout=10)

    def wait_for_sent(self, minimum: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sent_bytes < minimum:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.sent_bytes} of {minimum} bytes went through the proxy in {timeout} s")
            time.sleep(0.02)

    # relay -------------------------------------------------------------------------------
    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _reset(client)
                    _reset(upstream)
                    return
                self._connections |= {client, upstream}
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, target: socket.socket, upload: bool) -> None:
        try:
            while True:
                data = source.recv(16384 if not upload or self.upload_rate is None else 4096)
                if not data:
                    break
                if upload:
                    self._account(len(data))
                    if source not in self._connections:
                        break
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

    def _account(self, count: int) -> None:
        with self._lock:
            self.sent_bytes += count
            if self.cut_after_bytes is not None:
                self.cut_after_bytes -= count
                trip = self.cut_after_bytes <= 0
            else:
                trip = False
        if trip:
            self.cut()
        elif self.upload_rate:
            time.sleep(count / self.upload_rate)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped link or a killed peer looks to the other side."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()
