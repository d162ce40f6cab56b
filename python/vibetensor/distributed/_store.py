"""A small TCP key-value store for the rendezvous (torch's TCPStore in spirit; our own protocol).

Rank 0 serves it on MASTER_ADDR:MASTER_PORT from a daemon thread; every rank, rank 0 included,
talks to it as a client over one socket. Keys and values are bytes. What it is for: exchanging the
few names a process group needs at init (the shm segment's name; NCCL's unique id later) and a
join barrier. What it is not: a data channel (collectives go through the allreduce pack).

    >>> s = TCPStore("127.0.0.1", 0, is_master=True)   # port 0: any free port (s.port)
    >>> s.set("k", b"v"); s.get("k")
    b'v'
    >>> s.add("n", 2)
    2
    >>> s.close()
"""
from __future__ import annotations

import socket
import struct
import threading
import time

_SET, _GET, _ADD = 1, 2, 3
_OK, _TIMEOUT = 0, 1
_HDR = struct.Struct("!BdII")  # op, timeout (s), key length, value length


def _recv(sock, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the rendezvous store closed the connection (did rank 0 exit?)")
        buf += chunk
    return bytes(buf)


class _Server:
    def __init__(self, host: str, port: int):
        self.data: dict[bytes, bytes] = {}
        self.cv = threading.Condition()
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.port = self.sock.getsockname()[1]
        self.conns: list = []
        self.closed = False
        threading.Thread(target=self._accept, name="vt-store", daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="vt-store-conn", daemon=True).start()

    def _serve(self, conn):
        try:
            while True:
                op, timeout, nk, nv = _HDR.unpack(_recv(conn, _HDR.size))
                key = _recv(conn, nk)
                val = _recv(conn, nv)
                status, out = _OK, b""
                with self.cv:
                    if op == _SET:
                        self.data[key] = val
                        self.cv.notify_all()
                    elif op == _ADD:
                        n = int(self.data.get(key, b"0")) + int(val)
                        self.data[key] = str(n).encode()
                        out = self.data[key]
                        self.cv.notify_all()
                    elif op == _GET:
                        if not self.cv.wait_for(lambda: key in self.data or self.closed, timeout):
                            status = _TIMEOUT
                        elif key in self.data:
                            out = self.data[key]
                        else:  # closing: drop the connection, the client reconnects to the next store
                            return
                conn.sendall(struct.pack("!BI", status, len(out)) + out)
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            conn.close()

    def close(self):
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        try:  # wakes the accept() of the serving thread (close alone leaves it listening)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TCPStore:
    """set/get/add over TCP; `get` waits for the key up to `timeout` seconds. Rank 0 passes
    is_master=True and serves the store (port 0 picks a free one: read `.port`)."""

    def __init__(self, host: str, port: int, is_master: bool = False, timeout: float = 300.0):
        self.timeout = float(timeout)
        self._server = _Server(host, port) if is_master else None
        self.host, self.port = host, (self._server.port if is_master else int(port))
        self._lock = threading.Lock()
        self._sock = None
        self._connect()

    def _connect(self):
        deadline = time.monotonic() + self.timeout
        while True:  # rank 0 may not be listening yet
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=5)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"rendezvous: could not reach the store at {self.host}:{self.port} "
                                       f"within {self.timeout:.0f} s ({e}); is rank 0 running, and are "
                                       f"MASTER_ADDR/MASTER_PORT the same on every rank?") from None
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _request(self, op: int, key: str, val: bytes, timeout: float = 0.0) -> bytes:
        k = key.encode()
        msg = _HDR.pack(op, timeout, len(k), len(val)) + k + val
        with self._lock:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    self._sock.sendall(msg)
                    status, n = struct.unpack("!BI", _recv(self._sock, 5))
                    break
                except (ConnectionError, OSError):
                    # the server went away: rank 0 closed an earlier group's store while this rank,
                    # done with that group, had already connected for the next one. set/get are
                    # idempotent: reconnect (to the new store) and ask again; add is not.
                    if op == _ADD or time.monotonic() > deadline:
                        raise
                    self._sock.close()
                    time.sleep(0.02)
                    self._connect()
            out = _recv(self._sock, n)
        if status == _TIMEOUT:
            raise TimeoutError(f"rendezvous: key {key!r} did not appear within {timeout:.1f} s "
                               f"(did every rank call init_process_group with the same world_size?)")
        return out

    def set(self, key: str, value) -> None:
        self._request(_SET, key, value if isinstance(value, bytes) else str(value).encode())

    def get(self, key: str, timeout: float | None = None) -> bytes:
        return self._request(_GET, key, b"", self.timeout if timeout is None else float(timeout))

    def add(self, key: str, amount: int) -> int:
        return int(self._request(_ADD, key, str(int(amount)).encode()))

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            if self._server is not None:
                self._server.close()
