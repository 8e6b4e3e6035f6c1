"""Notice when a port we use goes: the JACK server died (even by SIGKILL, which leaves
its socket file behind), or the program that owned a port we play into or listen to quit.
`PortWatch.check()` raises a one-line UserError (ServerGone for a dead server); the engine
calls it every half second."""

from __future__ import annotations

import contextlib
import os
import re
import sys

from rnnrbm_live.errors import UserError
from rnnrbm_live.live.ports import (CLIENT_NAME, Backend, OpenPorts, _rtmidi, quiet_stderr,
                                    signals_held)


class ServerGone(UserError):
    """The MIDI server (jackd) died under us: nothing of ours is there to close."""


def jack_socket_path() -> str | None:
    """jackd2's server socket on Linux; it disappears when the server dies."""
    if not sys.platform.startswith("linux"):
        return None
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    return f"/dev/shm/jack_{server}_{os.getuid()}_0"


def jack_server_listening(socket_path: str) -> bool | None:
    """Whether jackd still listens on its socket. The socket file outlives a server killed
    with SIGKILL; its listening entry in /proc/net/unix does not. None: cannot tell."""
    try:
        with open("/proc/net/unix") as table:
            for line in table:
                fields = line.split(None, 7)
                if len(fields) == 8 and fields[7].rstrip("\n") == socket_path \
                        and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                    return True
    except (OSError, ValueError):
        return None
    return False


class PortWatch:
    """Notices a port that vanished: the JACK server died, or the program that owned a
    port we connected to quit. `check()` raises UserError; call it every second or so."""

    def __init__(self, backend: Backend, ports: OpenPorts):
        self.backend = backend
        self.ports = ports
        rtmidi = _rtmidi()
        api = getattr(rtmidi, f"API_{backend.api}")
        with quiet_stderr(), signals_held():
            self._dest_probe = rtmidi.MidiOut(rtapi=api, name=f"{CLIENT_NAME}-watch")
            self._src_probe = rtmidi.MidiIn(rtapi=api, name=f"{CLIENT_NAME}-watch")
        self._socket = jack_socket_path() if backend.key == "jack" else None
        if self._socket and not os.path.exists(self._socket):
            self._socket = None  # not jackd2's layout: do not guess
        # The server seen listening now (not, e.g., in another network namespace): then
        # its listening socket going away means it died, even by SIGKILL.
        self._listening = bool(self._socket) and jack_server_listening(self._socket) is True
        # (name, listing side, what to say) for every port that must stay there
        self._watch: list[tuple[str, str, str]] = []
        if ports.out_name:
            self._watch.append((ports.out_name, "sources" if ports.out_virtual
                                else "destinations", "output"))
        if ports.in_name:
            self._watch.append((ports.in_name, "destinations" if ports.in_virtual
                                else "sources", "input"))
        self.links = None  # a ConnectionWatch of our output (connections.py), if any

    def check(self) -> None:
        if self._socket and (not os.path.exists(self._socket) or (
                self._listening and jack_server_listening(self._socket) is False)):
            raise ServerGone("the jack server is gone (note-offs were attempted); start "
                             "jack again, then restart rnnrbm-live")
        try:
            listing = {"destinations": self._dest_probe.get_ports(),
                       "sources": self._src_probe.get_ports()}
        except Exception as e:
            raise UserError(f"{self.backend.key} midi: cannot list the ports any more "
                            f"({str(e).strip().lower()}); restart the midi system and "
                            "rnnrbm-live") from None
        for name, side, role in self._watch:
            if not _still_there(name, listing[side]):
                raise UserError(f"{name}: the {role} port is gone (note-offs were "
                                "attempted); start the program that owns it again, then "
                                "restart rnnrbm-live")
        if self.links is not None:
            self.links.check()

    def close(self) -> None:
        for probe in (self._dest_probe, self._src_probe):
            with contextlib.suppress(Exception):
                probe.delete()
        if self.links is not None:
            self.links.connections.close()


def _still_there(name: str, listing: list[str]) -> bool:
    if name in listing:
        return True
    base = re.sub(r"\s+\d+(:\d+)?$", "", name)  # Windows and ALSA number their ports
    return bool(base) and any(base in p for p in listing)
