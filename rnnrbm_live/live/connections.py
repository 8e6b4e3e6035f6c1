"""Who is connected to our JACK output, read through libjack itself (ctypes).

rtmidi cannot say what a port is connected to, and a connection made or removed from
outside (jack_disconnect, a patchbay, a DAW) is invisible to it. `JackConnections` is a
small JACK client of its own (never activated: it only asks the graph) that lists a
port's connections. It uses the libjack python-rtmidi was built with (its wheel carries
one; else the system's), so no new dependency. Where neither loads, or the client cannot
open, `open_connections` returns None and the engine goes on without the watch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

_NO_START_SERVER = 0x01


def _libjack() -> ctypes.CDLL | None:
    candidates = []
    try:
        import rtmidi
        site = os.path.dirname(os.path.dirname(rtmidi.__file__))  # wheels: python_rtmidi.libs
        candidates += sorted(glob.glob(os.path.join(site, "python_rtmidi.*", "libjack*.so*")))
    except ImportError:
        pass
    found = ctypes.util.find_library("jack")
    if found:
        candidates.append(found)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    lib.jack_client_open.restype = ctypes.c_void_p
    lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int,
                                     ctypes.POINTER(ctypes.c_int)]
    lib.jack_port_by_name.restype = ctypes.c_void_p
    lib.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.jack_port_get_all_connections.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.jack_port_get_all_connections.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.jack_free.argtypes = [ctypes.c_void_p]
    lib.jack_client_close.argtypes = [ctypes.c_void_p]


class JackConnections:
    def __init__(self, lib: ctypes.CDLL, client: int):
        self._lib = lib
        self._client = client

    def of(self, port_name: str) -> frozenset[str] | None:
        """The ports `port_name` is connected to; None if there is no such port."""
        lib = self._lib
        port = lib.jack_port_by_name(self._client, port_name.encode())
        if not port:
            return None
        names = lib.jack_port_get_all_connections(self._client, port)
        if not names:
            return frozenset()
        found = set()
        i = 0
        while names[i] is not None:
            found.add(names[i].decode(errors="replace"))
            i += 1
        lib.jack_free(ctypes.cast(names, ctypes.c_void_p))
        return frozenset(found)

    def close(self) -> None:
        if self._client:
            self._lib.jack_client_close(self._client)
            self._client = None


def open_connections(client_name: str) -> JackConnections | None:
    lib = _libjack()
    if lib is None:
        return None
    status = ctypes.c_int(0)
    client = lib.jack_client_open(client_name.encode(), _NO_START_SERVER, ctypes.byref(status))
    return JackConnections(lib, client) if client else None


class ConnectionWatch:
    """Connections of our output made or removed from outside. A receiver connected after
    a change may hold notes whose note-offs it never got (sent while it was not
    connected): on every new connection `on_new` runs (the sender then sends a note-off
    for every note it does not sound). With --out-port, the connection to that port
    being removed is said once, and its return too.

    Polled (`check`, every half second with the port watch): a connection removed and
    made again within one poll is not seen; libjack's connect callback would see it, but
    it runs on libjack's thread, where taking Python's lock can stall the server."""

    def __init__(self, connections: JackConnections, port: str, target: str | None = None,
                 on_new=None, log=None):
        self.connections = connections
        self.port = port
        self.target = target
        self.on_new = on_new or (lambda: None)
        self.log = log or (lambda line: None)
        self.connected = connections.of(port) or frozenset()
        self.target_lost = False

    def check(self) -> None:
        now = self.connections.of(self.port)
        if now is None:
            return  # our port is gone: the port watch says so
        if now - self.connected:
            self.on_new()
        if self.target is not None and (self.target not in now) != self.target_lost:
            self.target_lost = not self.target_lost
            self.log(f"--out-port {self.target}: " + (
                "its connection was removed from outside; nothing reaches it until it is "
                "connected again" if self.target_lost else "connected again"))
        self.connected = now
