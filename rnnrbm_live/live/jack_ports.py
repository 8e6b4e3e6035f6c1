"""The JACK-native path's ports as the engine sees them: open (virtual, or connected to
the ports --out-port / --in-port name), read the input on a thread of its own, notice a
port or the server going, report the output latency, close after the last note-off.

Our client has one MIDI output ("out") and one input ("in"). With --out-port NAME our
output is connected to that existing port (never a new one made for a mistyped name);
with --in-port NAME that port is connected to our input.

The input reader takes (frame, bytes) from the process callback's ring, parses them into
mido messages and hands each to the engine with its own time (frame / rate): the
quantizer, the MIDI clock follower and --record see when a note or tick happened, to the
sample, not when Python got to it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Callable

import mido

from rnnrbm_live.errors import UserError
from rnnrbm_live.live.jack_clock import JackFrameClock
from rnnrbm_live.live.jack_midi import HelperOpenError, JackMidi
from rnnrbm_live.live.jack_sender import JackSender
from rnnrbm_live.live.ports import match_port, quiet_stderr

PLAYBACK_LATENCY = 1    # JackPlaybackLatency in jack_latency_callback_mode_t


class NativePorts:
    """The JACK-native client and what the engine needs of it."""

    def __init__(self, midi: JackMidi, out_name: str, in_name: str,
                 out_virtual: bool, in_virtual: bool, watched: list[tuple[str, str]]):
        self.midi = midi
        self.output = midi
        self.out_name, self.in_name = out_name, in_name
        self.out_virtual, self.in_virtual = out_virtual, in_virtual
        self.clock = JackFrameClock(midi)
        self._watched = watched            # (port name, "output"|"input")
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()

    def make_sender(self, *args, **kwargs) -> JackSender:
        return JackSender(*args, **kwargs)

    # ------------------------------------------------------------ input

    def start_input(self, on_message: Callable[[mido.Message, float], None]) -> None:
        """Hand every input event from now on to on_message(msg, t), t its JACK time, on
        a thread of its own."""
        self.midi.skip_input()              # what came before the engine: not ours
        self._reader = threading.Thread(target=self._read, args=(on_message,),
                                        name="rnnrbm-jack-input", daemon=True)
        self._reader.start()

    def _read(self, on_message) -> None:
        midi, rate = self.midi, self.midi.rate
        parser = mido.Parser()
        while not self._stop.is_set():
            midi.wait_input(0.1)
            while (event := midi.pop_input()) is not None:
                frame, data = event
                parser.feed(data)
                for msg in parser:
                    on_message(msg, frame / rate)

    # ------------------------------------------------------------ watching

    def check(self) -> None:
        """Raise UserError when the server or a port we were connected to is gone."""
        midi = self.midi
        if midi.server_gone is not None:
            raise UserError("the jack server is gone (note-offs were attempted); start "
                            "jack again, then restart rnnrbm-live")
        if (how := midi.helper_gone) is not None:
            raise UserError(f"the jack client's helper process (pid {midi.helper.pid}) "
                            f"ended ({how}); its notes may still sound: restart "
                            "rnnrbm-live")
        if midi.callback_error is not None:
            raise RuntimeError(f"in the jack process callback: {midi.callback_error}")
        names = {p.name for p in midi.client.get_ports(is_midi=True)}
        for name, role in self._watched:
            if name not in names:
                raise UserError(f"{name}: the {role} port is gone (note-offs were "
                                "attempted); start the program that owns it again, then "
                                "restart rnnrbm-live")

    def stats(self) -> dict:
        midi = self.midi
        return {"jack_late_events": midi.late_events, "jack_lost_events": midi.lost_events,
                "jack_max_late_frames": midi.max_late_frames, "jack_xruns": midi.xruns,
                "jack_input_dropped": midi.input_dropped, "jack_rate": midi.rate,
                "jack_period": midi.period}

    # ------------------------------------------------------------ latency

    def output_latency(self) -> tuple[int, int]:
        """JACK's playback latency range of our output, in frames: how long after its
        frame an event we write reaches the speakers (the synth's and the sound card's
        share), as our port and the ports it is connected to report it."""
        port = self.midi.out_port
        ranges = [playback_latency(other) for other in
                  self.midi.client.get_all_connections(port)] or [playback_latency(port)]
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def latency_line(self) -> str:
        low, high = self.output_latency()
        rate = self.midi.rate
        period_ms = 1000 * self.midi.period / rate
        return (f"output latency: {high} samples ({1000 * high / rate:.2f} ms) at "
                f"{rate} hz, as jack reports our output's playback latency "
                f"(range {low}-{high}); compensate it in the daw or with --latency-ms; "
                f"events land on their exact sample; period {period_ms:.2f} ms")

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        self._stop.set()
        self.midi.flush()                   # the final note-offs reach JACK first
        if self._reader is not None:
            self._reader.join(1.0)
        with quiet_stderr():
            self.midi.close()


def playback_latency(port) -> tuple[int, int]:
    """jack_port_get_latency_range(port, playback): JACK-Client does not wrap it."""
    lib = _libjack()
    if lib is None:
        return 0, 0
    import jack
    address = int(jack._ffi.cast("uintptr_t", port._ptr))
    rng = (ctypes.c_uint32 * 2)()
    lib.jack_port_get_latency_range(ctypes.c_void_p(address), PLAYBACK_LATENCY, rng)
    return int(rng[0]), int(rng[1])


_LIBJACK: list = []


def _libjack():
    if not _LIBJACK:
        name = ctypes.util.find_library("jack")
        lib = ctypes.CDLL(name) if name else None
        if lib is not None:
            lib.jack_port_get_latency_range.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                        ctypes.c_void_p]
            lib.jack_port_get_latency_range.restype = None
        _LIBJACK.append(lib)
    return _LIBJACK[0]


def open_native(out_port: str | None, in_port: str | None, client_name: str,
                want_input: bool = True) -> NativePorts:
    """Our JACK client, its ports made and connected as --out-port / --in-port say."""
    import jack
    try:
        midi = JackMidi(client_name, want_input=want_input)
    except HelperOpenError as e:
        if e.name_taken:
            raise UserError(f"a jack client named {client_name} already exists (another "
                            "rnnrbm-live?); stop it or pass --client-name NAME") from None
        raise UserError(f"jack midi: cannot open a client ({str(e).lower()}); check that "
                        "the jack server is running") from None
    except jack.JackOpenError as e:
        raise UserError(f"jack midi: cannot open a client ({str(e).lower()}); check that "
                        "the jack server is running") from None
    try:
        return _connect(midi, out_port, in_port, want_input)
    except BaseException:
        midi.close()
        raise


def _connect(midi: JackMidi, out_port, in_port, want_input) -> NativePorts:
    client = midi.client
    ours = f"{midi.name}:"
    destinations = [p.name for p in client.get_ports(is_midi=True, is_input=True)
                    if not p.name.startswith(ours)]
    sources = [p.name for p in client.get_ports(is_midi=True, is_output=True)
               if not p.name.startswith(ours)]
    watched = []
    out_name, out_virtual = midi.out_port.name, True
    if out_port is not None:
        out_name = match_port("--out-port", out_port, destinations, "you can play into")
        client.connect(midi.out_port, out_name)
        out_virtual = False
        watched.append((out_name, "output"))
    in_name, in_virtual = "", False
    if want_input:
        in_name, in_virtual = midi.in_port.name, True
        if in_port is not None:
            in_name = match_port("--in-port", in_port, sources, "you can listen to")
            client.connect(in_name, midi.in_port)
            in_virtual = False
            watched.append((in_name, "input"))
    return NativePorts(midi, out_name, in_name, out_virtual, in_virtual, watched)
