"""MIDI backends and ports: choose a backend, list ports, open ours, notice when one goes.

Directions, as the user sees them:
- rnnrbm-live's output ("out") sends notes FROM rnnrbm-live. In a DAW or synth it shows
  up as a MIDI *input* to choose. With --out-port NAME rnnrbm-live plays into an
  existing port instead: one of the ports listed as "you can play into".
- rnnrbm-live's input ("in") receives your playing, control changes and MIDI clock. In
  other programs it shows up as a MIDI *output* to send TO. With --in-port NAME it
  listens to an existing port instead: one of the ports listed as "you can listen to".

Backends are mido's rtmidi backend with an explicit API ('mido.backends.rtmidi/UNIX_JACK'
and so on): without one, rtmidi picks ALSA on Linux and fails where there is no ALSA
sequencer, with no fallback. A port NAME given on the command line is never created: it
must match (exactly, or as a unique case-insensitive substring, since Windows appends
index numbers) a port that exists, or the error lists the ports that do.

Every opened port must stay referenced for as long as the engine runs: a garbage
collected input port silently stops calling back (Magenta issues 860 and 1527).
`OpenPorts` holds them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Callable

import mido

from rnnrbm_live.errors import UserError

CLIENT_NAME = "rnnrbm-live"
# A bare `jackd` only prints its usage: name commands that start a server.
START_JACK = ("start a jack server: jackd -d alsa (a desktop's sound card), pw-jack "
              "rnnrbm-live (pipewire's jack), qjackctl, or jackd -d dummy (no sound card)")
OUT_NAME = "out"
IN_NAME = "in"

# --backend name -> rtmidi API name (mido.backends.rtmidi/<API>). jack-native plays
# through JACK-Client (jack_ports.py) and lists ports through rtmidi's JACK API.
API_NAMES = {
    "jack-native": "UNIX_JACK",
    "alsa": "LINUX_ALSA",
    "jack": "UNIX_JACK",
    "coremidi": "MACOSX_CORE",
    "windows": "WINDOWS_MM",
}
BACKEND_CHOICES = ("auto",) + tuple(API_NAMES)
LOOPMIDI = "https://www.tobias-erichsen.de/software/loopmidi.html"


@dataclass
class Backend:
    key: str                     # 'jack', 'alsa', ...
    api: str                     # rtmidi API name
    mido: mido.Backend

    @property
    def module_name(self) -> str:
        return f"mido.backends.rtmidi/{self.api}"

    @property
    def native(self) -> bool:
        """JACK's own MIDI API (sample-accurate), not rtmidi's."""
        return self.key == "jack-native"

    @property
    def virtual_ports(self) -> bool:
        return self.key != "windows"


@contextlib.contextmanager
def quiet_stderr():
    """Hide what C libraries print on fd 2 (libjack explains a missing server at length)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def library_lines_hidden(hide: bool = True):
    """Keep what C libraries print on fd 2 (libjack: a dozen lines when its server goes)
    out of the terminal for the whole run, while Python's own sys.stderr (our one-line
    messages) still reaches it: sys.stderr moves to a copy of fd 2, fd 2 to /dev/null."""
    if not hide:
        yield
        return
    try:
        sys.stderr.flush()
        keep = open(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                    errors="backslashreplace")
    except (OSError, ValueError):
        yield
        return
    old_stderr, sys.stderr = sys.stderr, keep
    try:
        with quiet_stderr():
            yield
    finally:
        sys.stderr = old_stderr
        keep.close()


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM off this thread while libjack talks to its server: a signal
    that lands in one of its socket calls makes it fail as if no server ran ("jack server
    not running?"). A signal that came meanwhile is handled once the block is done."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _rtmidi():
    import rtmidi  # python-rtmidi; imported here so `import rnnrbm_live.live.ports` stays cheap
    return rtmidi


def _compiled(api: str) -> bool:
    rtmidi = _rtmidi()
    return getattr(rtmidi, f"API_{api}", None) in rtmidi.get_compiled_api()


def jack_running() -> bool:
    """Whether a JACK server answers: open (and close) an rtmidi JACK client, quietly."""
    if not _compiled("UNIX_JACK"):
        return False
    rtmidi = _rtmidi()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # probing must not start one
    try:
        with quiet_stderr(), signals_held():
            probe = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=f"{CLIENT_NAME}-probe")
    except Exception:  # rtmidi.SystemError: no server
        return False
    with signals_held():
        probe.delete()
    return True


def choose_backend(requested: str = "auto") -> Backend:
    """The backend for --backend `requested`, checked to work here."""
    if requested not in BACKEND_CHOICES:
        raise UserError(f"--backend {requested}: unknown backend; use one of "
                        f"{', '.join(BACKEND_CHOICES)}")
    key = requested
    if key == "auto":
        if sys.platform == "darwin":
            key = "coremidi"
        elif sys.platform == "win32":
            key = "windows"
        elif jack_running():
            key = "jack-native" if _native_available() else "jack"
        else:
            key = "alsa"
            if not os.path.exists("/dev/snd/seq"):
                raise UserError("no midi system found: no jack server is running and alsa "
                                f"has no sequencer (/dev/snd/seq); {START_JACK}; or load "
                                "the snd-seq kernel module")
    api = API_NAMES[key]
    if not _compiled(api):
        raise UserError(f"--backend {key}: this python-rtmidi was built without {key} "
                        "support; choose another --backend (see rnnrbm-live ports)")
    if key in ("jack", "jack-native") and not jack_running():
        raise UserError(f"--backend {key}: no jack server is running; {START_JACK}")
    if key == "jack-native" and not _native_available():
        raise UserError("--backend jack-native: needs the JACK-Client package (pip install "
                        "'rnnrbm-live[jack]'); or use --backend jack")
    if key == "alsa" and sys.platform.startswith("linux") \
            and not os.path.exists("/dev/snd/seq"):
        raise UserError("--backend alsa: alsa midi is not available here (no "
                        f"/dev/snd/seq); {START_JACK}, and use --backend jack; or load "
                        "the snd-seq kernel module")
    if key in ("jack", "jack-native"):
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
    return Backend(key=key, api=api, mido=mido.Backend(f"mido.backends.rtmidi/{api}"))


def _native_available() -> bool:
    from rnnrbm_live.live.jack_midi import available
    return available()


def _call(backend: Backend, what: str, fn: Callable):
    try:
        with quiet_stderr(), signals_held():
            return fn()
    except UserError:
        raise
    except Exception as e:
        detail = str(e).strip().splitlines()[0].lower() if str(e).strip() else \
            type(e).__name__
        hint = ("start jack and use --backend jack" if backend.key == "alsa"
                else "check that the midi system is running")
        raise UserError(f"{backend.key} midi: cannot {what} ({detail}); {hint}") from None


def list_ports(backend: Backend) -> tuple[list[str], list[str]]:
    """(ports you can play into = destinations, ports you can listen to = sources)."""
    destinations = _call(backend, "list the midi ports", backend.mido.get_output_names)
    sources = _call(backend, "list the midi ports", backend.mido.get_input_names)
    return list(dict.fromkeys(destinations)), list(dict.fromkeys(sources))


def match_port(option: str, name: str, available: list[str], role: str) -> str:
    """The one existing port that `name` names: exact, else a unique case-insensitive
    substring. Never a new port."""
    if name in available:
        return name
    hits = [p for p in available if name.lower() in p.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        listing = ", ".join(available) if available else "none"
        raise UserError(f"{option} {name}: no such midi port; ports {role}: {listing} "
                        "(rnnrbm-live ports lists them)")
    raise UserError(f"{option} {name}: matches {len(hits)} ports ({', '.join(hits)}); "
                    "give more of the name")


def check_port_names(backend: Backend, out_port: str | None, in_port: str | None) -> None:
    """Fail early (before the model loads) on a port name that matches nothing."""
    if out_port is None and in_port is None:
        return
    destinations, sources = list_ports(backend)
    if out_port is not None:
        match_port("--out-port", out_port, destinations, "you can play into")
    if in_port is not None:
        match_port("--in-port", in_port, sources, "you can listen to")


def _no_virtual(option: str) -> UserError:
    return UserError(f"{option}: windows has no virtual midi ports; install loopmidi "
                     f"({LOOPMIDI}), create a port there and pass {option} NAME with its "
                     "name")


class NamedOutput:
    """Plays into an existing port from a client named after --client-name, with a port
    of its own (CLIENT:out) connected to it; mido would name the client "RtMidiOut
    Client", the same for every program, so two rnnrbm-lives could not be told apart."""

    def __init__(self, backend: Backend, client_name: str, target: str):
        rtmidi = _rtmidi()
        self._rt = rtmidi.MidiOut(rtapi=getattr(rtmidi, f"API_{backend.api}"),
                                  name=client_name)
        names = self._rt.get_ports()
        if target not in names:
            self._rt.delete()
            raise OSError(f"unknown port {target!r}")
        self._rt.open_port(names.index(target), name=OUT_NAME)

    def send(self, msg: mido.Message) -> None:
        self._rt.send_message(msg.bytes())

    def close(self) -> None:
        self._rt.close_port()
        self._rt.delete()


@dataclass
class OpenPorts:
    """Every port the engine uses, referenced for the engine's whole life."""

    backend: Backend
    output: object = None
    input: object = None
    out_name: str = ""
    in_name: str = ""
    out_virtual: bool = False
    own_out: str = ""            # our own output port's full name (JACK), if we know it
    in_virtual: bool = False
    _keep: list = field(default_factory=list)

    def close(self) -> None:
        if self.input is not None:
            # Stop the backend calling into Python first: mido keeps its own wrapper as
            # rtmidi's callback even with callback=None, and on JACK that callback runs
            # in the server's cycle, which closing a client waits for (a GIL deadlock).
            # mido's own close re-installs its wrapper, so close rtmidi's port before it.
            rt = getattr(self.input, "_rt", None)
            with contextlib.suppress(Exception):
                if rt is not None:
                    rt.cancel_callback()
                    rt.close_port()
        for port in (self.input, self.output):
            if port is not None:
                with contextlib.suppress(Exception):
                    port.close()


def open_ports(backend: Backend, out_port: str | None, in_port: str | None,
               callback: Callable, client_name: str = CLIENT_NAME,
               want_input: bool = True) -> OpenPorts:
    """Open the output (and input) ports: virtual ones named after `client_name`, or the
    existing ports --out-port / --in-port name."""
    if not backend.virtual_ports and (out_port is None or (want_input and in_port is None)):
        raise _no_virtual("--out-port" if out_port is None else "--in-port")
    destinations, sources = list_ports(backend)
    ports = OpenPorts(backend=backend)
    if backend.key == "jack" and any(p.split(":")[0] == client_name
                                     for p in sources + destinations):
        raise UserError(f"a jack client named {client_name} already exists (another "
                        "rnnrbm-live?); stop it or pass --client-name NAME")
    if out_port is not None:
        name = match_port("--out-port", out_port, destinations, "you can play into")
        opener = ((lambda: NamedOutput(backend, client_name, name)) if backend.key == "jack"
                  else (lambda: backend.mido.open_output(name)))
        ports.output = _call(backend, f"open the output port {name}", opener)
        ports.out_name = name
        if isinstance(ports.output, NamedOutput):
            ports.own_out = f"{client_name}:{OUT_NAME}"
    else:
        ports.output = _call(backend, "create the virtual output port",
                             lambda: backend.mido.open_output(OUT_NAME,
                                                              client_name=client_name))
        ports.out_virtual = True
        ports.out_name = _new_name(backend, sources, "sources", OUT_NAME, client_name)
        ports.own_out = ports.out_name if backend.key == "jack" else ""
    if want_input:
        if in_port is not None:
            name = match_port("--in-port", in_port, sources, "you can listen to")
            ports.input = _call(backend, f"open the input port {name}",
                                lambda: backend.mido.open_input(name, callback=callback))
            ports.in_name = name
        else:
            ports.input = _call(backend, "create the virtual input port",
                                lambda: backend.mido.open_input(IN_NAME,
                                                                client_name=client_name,
                                                                callback=callback))
            ports.in_virtual = True
            ports.in_name = _new_name(backend, destinations, "destinations", IN_NAME,
                                      client_name)
    if ports.input is not None:
        # MIDI clock (0xF8) and transport are "timing" messages, which rtmidi drops unless
        # told otherwise; mido's backend already passes them, say so explicitly anyway.
        rt = getattr(ports.input, "_rt", None)
        if rt is not None:
            rt.ignore_types(sysex=True, timing=False, active_sense=True)
    ports._keep = [ports.output, ports.input]
    return ports


def _new_name(backend: Backend, before: list[str], side: str, short: str,
              client_name: str) -> str:
    """The full name other programs see for the virtual port just opened. JACK gives each
    rtmidi object its own client, renaming clashes (rnnrbm-live-01): look it up."""
    try:
        destinations, sources = list_ports(backend)
    except UserError:
        return f"{client_name}:{short}"
    now = sources if side == "sources" else destinations
    new = [p for p in now if p not in before and client_name in p]
    exact = [p for p in new if p.split(" ")[0].endswith(f":{short}")]
    if exact:
        return exact[0]
    return new[0] if new else f"{client_name}:{short}"


def describe_ports(backend: Backend, client_name: str = CLIENT_NAME) -> str:
    """The text of `rnnrbm-live ports`."""
    destinations, sources = list_ports(backend)
    lines = [f"midi backend: {backend.key} ({backend.module_name})", ""]
    lines.append("ports rnnrbm-live can play INTO (--out-port NAME): synths, DAW inputs")
    lines += [f"  {p}" for p in destinations] or ["  (none)"]
    lines.append("")
    lines.append("ports rnnrbm-live can listen TO (--in-port NAME): keyboards, DAW outputs, "
                 "MIDI clock")
    lines += [f"  {p}" for p in sources] or ["  (none)"]
    lines.append("")
    if backend.virtual_ports:
        lines.append("without --out-port/--in-port rnnrbm-live makes its own ports:")
        lines.append(f"  {client_name}:{OUT_NAME}  we send FROM it: connect it to a synth "
                     "or a DAW track's midi input")
        lines.append(f"  {client_name}:{IN_NAME}   send TO it: your keyboard, a DAW track, "
                     "the DAW's midi clock")
        if backend.key == "jack":
            lines.append("on jack the input may be renamed (e.g. "
                         f"{client_name}-01:{IN_NAME}); rnnrbm-live prints the real names")
    else:
        lines.append(f"windows has no virtual midi ports: create two in loopmidi "
                     f"({LOOPMIDI}) and pass them with --out-port and --in-port")
    return "\n".join(lines)
