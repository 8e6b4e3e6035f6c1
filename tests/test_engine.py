"""The live engine on a fake clock: grid placement, message order, every way out, the
continue/accompany/generate logic, key handling, live controls and MIDI clock following.

Virtual time moves from one due time to the next (Engine.run_fake), so minutes of music
take milliseconds and every send time is exact. The output is a small in-memory port (the
test's receiver). Most tests use `ScriptedModel`, a stand-in with StepSession's interface
whose frames are chosen by the test, so what should sound is known; `test_real_model_*`
runs the exported ONNX model through StepSession.
"""

from __future__ import annotations

import mido
import numpy as np
import pytest

from rnnrbm_live.midi import keys
from rnnrbm_live.live.clock import FakeClock, InternalGrid
from rnnrbm_live.live.controls import CCMap, Controls, cc_to_key, cc_to_temperature
from rnnrbm_live.live.engine import Engine, LiveConfig
from rnnrbm_live.live.recording import write_recording
from rnnrbm_live.live.midi_clock import MidiClockFollower
from rnnrbm_live.midi.roll import LOWEST_PITCH, N_KEYS

T_START = 1000.0
DELAY = 0.25
T0 = T_START + DELAY            # frame 0 of the internal grid
DT = 0.3                        # 100 bpm, eighth notes


# ----------------------------------------------------------------------------- helpers


class Sink:
    """An output port in memory: records (time, message); optionally vanishes."""

    def __init__(self, clock, fail_after: int | None = None):
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []
        self.attempts: list[mido.Message] = []
        self.fail_after = fail_after

    def send(self, msg):
        self.attempts.append(msg)
        if self.fail_after is not None and len(self.attempts) > self.fail_after:
            raise OSError("port vanished")
        self.sent.append((self.clock.now(), msg))

    def notes(self, kind=None):
        out = []
        for t, m in self.sent:
            if m.type in ("note_on", "note_off") and (kind is None or m.type == kind):
                out.append((t, m))
        return out


class ScriptedModel:
    """StepSession's interface with frames chosen by `policy(step_index, rng)` -> notes
    (MIDI numbers). Clamps and temperature are applied as the step contract says."""

    def __init__(self, policy=None, seed=0, fail_at: int | None = None):
        self.policy = policy or (lambda i, rng: [60 + (i % 3) * 4])
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.listened: list[np.ndarray] = []
        self.generated: list[np.ndarray] = []
        self.temperatures: list[float] = []
        self.fail_at = fail_at
        self.card = {"n_visible": 88, "frames_per_beat": 2, "gibbs_steps": 1}

    @property
    def state(self):
        return (self.steps, len(self.listened), len(self.generated))

    @state.setter
    def state(self, value):
        self.steps, n_listened, n_generated = value
        del self.listened[n_listened:]
        del self.generated[n_generated:]

    def step(self, clamp_mask=None, clamp_value=None, temperature=None):
        if self.fail_at is not None and self.steps >= self.fail_at:
            raise RuntimeError("model exploded")
        v = np.zeros(N_KEYS, dtype=np.uint8)
        for note in self.policy(self.steps, self.rng):
            if LOWEST_PITCH <= note < LOWEST_PITCH + N_KEYS:
                v[note - LOWEST_PITCH] = 1
        if clamp_mask is not None:
            m = np.asarray(clamp_mask)[0] != 0
            v[m] = (np.asarray(clamp_value)[0][m] != 0)
        self.steps += 1
        self.temperatures.append(temperature)
        self.generated.append(v.astype(bool))
        return v[None]

    def listen(self, frames):
        self.listened.append(np.asarray(frames)[0] != 0)
        self.steps += 1
        return frames


def make(mode="generate", model=None, sink_fail_after=None, **config):
    clock = FakeClock(T_START)
    model = model or ScriptedModel()
    sink = Sink(clock, sink_fail_after)
    config.setdefault("start_delay_s", DELAY)
    engine = Engine(model, sink, LiveConfig(mode=mode, **config), clock=clock)
    return engine, sink, model


def note(t, n, vel=90):
    return (t, mido.Message("note_on", note=n, velocity=vel))


def off(t, n):
    return (t, mido.Message("note_off", note=n))


def cc(t, control, value):
    return (t, mido.Message("control_change", control=control, value=value))


def play(notes_and_frames, frame_s=DT, t0=T0, early=0.01):
    """Events for a phrase: [(frame, length, [notes])], played a little early/late."""
    events = []
    for k, length, ns in notes_and_frames:
        for n in ns:
            events.append(note(t0 + k * frame_s - early, n))
            events.append(off(t0 + (k + length) * frame_s - early, n))
    return events


def assert_no_hanging(sink):
    """Every note-on has a later note-off, and the last message is CC 123."""
    sounding: dict[int, float] = {}
    for t, m in sink.sent:
        if m.type == "note_on" and m.velocity > 0:
            assert m.note not in sounding, f"note {m.note} on twice at {t}"
            sounding[m.note] = t
        elif m.type in ("note_off", "note_on"):
            sounding.pop(m.note, None)
    assert not sounding, f"hanging notes: {sounding}"
    last = sink.sent[-1][1]
    assert last.type == "control_change" and last.control == 123


def frames_of(sink, t0=T0, dt=DT):
    """{frame index: set of note-ons at that frame}, checking each is exactly on the grid."""
    out: dict[int, set[int]] = {}
    for t, m in sink.notes("note_on"):
        k = round((t - t0) / dt)
        out.setdefault(k, set()).add(m.note)
    return out


# ----------------------------------------------------------------------------- timing


def test_generate_messages_fall_exactly_on_the_grid():
    engine, sink, _ = make("generate")
    end = T0 + 20 * DT + 0.01
    engine.run_fake(until=end)
    times = sorted({t for t, _ in sink.notes() if t < end})  # the final note-offs: at end
    assert len(times) >= 20
    for t in times:
        k = (t - T0) / DT
        assert t == pytest.approx(T0 + round(k) * DT, abs=1e-9)
    assert engine.stats()["late_frames"] == 0
    assert_no_hanging(sink)


@pytest.mark.parametrize("latency_ms", [-25.0, 40.0])
def test_latency_offset_moves_every_message(latency_ms):
    engine, sink, _ = make("generate", latency_s=latency_ms / 1000)
    end = T0 + 10 * DT + 0.1
    engine.run_fake(until=end)
    for t, _ in sink.notes():
        if t == end:
            continue
        k = round((t - T0 - latency_ms / 1000) / DT)
        assert t == pytest.approx(T0 + k * DT + latency_ms / 1000, abs=1e-9)


def test_note_offs_come_before_note_ons_within_a_frame():
    # frame i sounds note 60+i%3*4 only: every frame turns one note off and one on
    engine, sink, _ = make("generate")
    engine.run_fake(until=T0 + 12 * DT + 0.01)
    by_time: dict[float, list[str]] = {}
    for t, m in sink.notes():
        by_time.setdefault(t, []).append(m.type)
    changes = [kinds for kinds in by_time.values() if len(kinds) == 2]
    assert len(changes) >= 10
    for kinds in changes:
        assert kinds == ["note_off", "note_on"]


def test_held_unit_is_one_note_not_retriggered():
    engine, sink, _ = make("generate", model=ScriptedModel(lambda i, rng: [64]))
    engine.run_fake(until=T0 + 10 * DT)
    ons = sink.notes("note_on")
    assert [m.note for _, m in ons] == [64]
    assert_no_hanging(sink)


def test_internal_grid_schedules_absolutely():
    grid = InternalGrid(10.0, 0.3)
    assert grid.time_of(1000) == pytest.approx(10.0 + 300.0)
    assert grid.position(10.0 + 0.45) == pytest.approx(1.5)


# ----------------------------------------------------------------------------- ways out


def test_exception_in_the_model_silences_everything():
    engine, sink, model = make("generate", model=ScriptedModel(
        lambda i, rng: [60, 64, 67 + i % 2], fail_at=7))
    engine.run_fake(until=T0 + 30 * DT)
    assert isinstance(engine.failure, RuntimeError)
    assert engine.stop_reason == "failure"
    assert sink.notes("note_on")
    assert_no_hanging(sink)


def test_vanished_output_port_still_attempts_every_note_off():
    engine, sink, _ = make("generate", model=ScriptedModel(lambda i, rng: [60, 64 + i % 2]),
                           sink_fail_after=9)
    engine.run_fake(until=T0 + 30 * DT)
    assert engine.failure is not None and "sending failed" in str(engine.failure)
    sounded = {m.note for m in sink.attempts[:9] if m.type == "note_on"}
    released = {m.note for m in sink.attempts[9:] if m.type == "note_off"}
    # every note that sounded when the port went is turned off (or was turned off before)
    still_on = set()
    for m in sink.attempts[:9]:
        if m.type == "note_on":
            still_on.add(m.note)
        elif m.type == "note_off":
            still_on.discard(m.note)
    assert sounded and still_on <= released
    assert sink.attempts[-1].type == "control_change" and sink.attempts[-1].control == 123


def test_port_watch_failure_stops_and_silences():
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise OSError("the jack server is gone")

    engine, sink, _ = make("generate")
    engine.port_check = check
    engine.run_fake(until=T0 + 60)
    assert isinstance(engine.failure, OSError)
    assert sink.sent[-1][0] < T0 + 3  # stopped at the fourth check, not at the end
    assert_no_hanging(sink)


def test_stop_silences_and_sends_all_notes_off_on_the_channel():
    engine, sink, _ = make("generate", channel=5,
                           model=ScriptedModel(lambda i, rng: [48, 60, 72]))
    engine.run_fake(until=T0 + 5 * DT)
    assert_no_hanging(sink)
    assert all(m.channel == 5 for _, m in sink.sent)


# ----------------------------------------------------------------------------- continue


def c_major_answer(i, rng):
    return [60 + (0, 4, 7, 12, 7, 4)[i % 6]]  # C E G C G E: a model that plays C major


def run_phrase(model=None, until_frames=40, extra_events=(), **config):
    """A 4-frame phrase C4 D4 E4 F4 (frames 0..3), then silence."""
    engine, sink, model = make("continue", model=model or ScriptedModel(c_major_answer),
                               **config)
    events = play([(0, 1, [60]), (1, 1, [62]), (2, 1, [64]), (3, 1, [65])])
    engine.run_fake(until=T0 + until_frames * DT, events=events + list(extra_events))
    return engine, sink, model


def test_continue_listens_then_answers_after_one_bar_of_silence():
    engine, sink, model = run_phrase()
    assert [np.flatnonzero(f).tolist() for f in model.listened[:4]] == \
        [[39], [41], [43], [44]]  # C4..F4 heard in order (key of C: no shift)
    ons = sink.notes("note_on")
    # the phrase ends at frame 4; one bar (8 frames) of silence; the answer at frame 12
    assert ons[0][0] == pytest.approx(T0 + 12 * DT, abs=1e-9)
    # as long as the phrase: frames 12..15; everything off at frame 16
    answer_frames = frames_of(sink)
    assert sorted(answer_frames) == [12, 13, 14, 15]
    offs = [t for t, m in sink.notes("note_off")]
    assert max(offs) == pytest.approx(T0 + 16 * DT, abs=1e-9)
    assert engine.composer.answers == 1
    assert_no_hanging(sink)


def test_silence_counts_from_the_quantized_end_of_a_short_last_note():
    # G4, 0.8 frames long, starts 0.45 frames early for frame 4: both its ends round to
    # frame 4, it keeps that one frame, so the phrase ends at frame 5 and the answer comes
    # a bar later, at frame 13 (the player's own release plus a bar is frame 12.35)
    engine, sink, model = make("continue", model=ScriptedModel(c_major_answer))
    events = play([(0, 1, [60]), (1, 1, [62]), (2, 1, [64]), (3, 1, [65])])
    events += [note(T0 + 3.55 * DT, 67), off(T0 + 4.35 * DT, 67)]
    engine.run_fake(until=T0 + 40 * DT, events=sorted(events, key=lambda e: e[0]))
    assert [np.flatnonzero(f).tolist() for f in model.listened[:5]] == \
        [[39], [41], [43], [44], [46]]
    assert sorted(frames_of(sink)) == [13, 14, 15, 16, 17]
    assert_no_hanging(sink)


def test_silence_span_and_answer_length_are_settable():
    engine, sink, _ = run_phrase(silence_bars=0.5, answer_bars=1.0)
    k = sorted(frames_of(sink))
    assert k[0] == 4 + 4  # half a bar of eighths
    assert k[-1] == 8 + 8 - 1


def test_playing_again_before_the_span_ends_means_no_answer_yet():
    # the player resumes at frame 9 (before frame 12): no answer until after that phrase
    more = play([(9, 1, [67])])
    engine, sink, model = run_phrase(extra_events=more, until_frames=60)
    ons = sink.notes("note_on")
    assert ons and ons[0][0] == pytest.approx(T0 + (10 + 8) * DT, abs=1e-9)
    # the rests between the two phrases were heard as silent frames: 4 notes, 5 rests, G4
    heard = model.listened[:10]
    assert [f.any() for f in heard] == [True] * 4 + [False] * 5 + [True]


def test_the_player_interrupting_stops_the_answer_at_once():
    # the answer runs frames 12..19 (answer_bars=1); the player plays at frame 14.3
    t_int = T0 + 14.3 * DT
    engine, sink, model = run_phrase(answer_bars=1.0, until_frames=40,
                                     extra_events=[note(t_int, 72), off(t_int + 0.5, 72)])
    ons = [t for t, _ in sink.notes("note_on")]
    offs = [t for t, _ in sink.notes("note_off")]
    assert min(ons) == pytest.approx(T0 + 12 * DT)
    assert all(t < t_int for t in ons[:3])
    # silenced at the player's note, not at the next grid line
    assert max(t for t in offs if t <= t_int + 1e-9) == pytest.approx(t_int, abs=1e-9)
    # no answer note starts after the interruption until a new answer (after a new phrase)
    later = [t for t in ons if t > t_int]
    assert not later or min(later) >= t_int + 8 * DT
    assert engine.composer.interruptions == 1
    assert_no_hanging(sink)


def test_answer_follows_a_new_phrase_after_an_interruption():
    t_int = T0 + 14.3 * DT
    events = [note(t_int, 72), off(T0 + 16 * DT - 0.01, 72)]  # frames 14..15
    engine, sink, model = run_phrase(answer_bars=1.0, until_frames=60,
                                     extra_events=events)
    assert engine.composer.answers == 2
    second = [t for t, _ in sink.notes("note_on") if t > t_int]
    assert min(second) == pytest.approx(T0 + (16 + 8) * DT, abs=1e-9)


def test_answer_is_moved_to_the_players_key():
    # a phrase in E major; the (stand-in) model answers in C major, as the bundled
    # models learned; the answer must come out in E major
    e_major = [64, 66, 68, 69, 71, 73, 75, 76, 71, 68, 64]
    phrase = [(i, 1, [n]) for i, n in enumerate(e_major)]
    engine, sink, model = make("continue", model=ScriptedModel(c_major_answer))
    engine.run_fake(until=T0 + 50 * DT, events=play(phrase))
    answer = [m.note for _, m in sink.notes("note_on")]
    assert answer
    roll = np.zeros((len(answer), N_KEYS), dtype=np.uint8)
    for i, n in enumerate(answer):
        roll[i, n - LOWEST_PITCH] = 1
    e_pcs = {(4 + s) % 12 for s in (0, 2, 4, 5, 7, 9, 11)}
    c_pcs = {s for s in (0, 2, 4, 5, 7, 9, 11)}
    in_e = sum(n % 12 in e_pcs for n in answer)
    in_c = sum(n % 12 in c_pcs for n in answer)
    assert in_e == len(answer) and in_e > in_c
    # and the model heard the phrase moved to C
    heard = np.array(model.listened[:len(e_major)])
    assert keys.estimate_key(heard)[0] == 0


def test_first_answer_frame_is_never_silent():
    # the model's first answer frame is empty 3 times out of 4: resampled until it is not
    def sparse(i, rng):
        return [] if rng.random() < 0.75 else [67]
    engine, sink, _ = run_phrase(model=ScriptedModel(sparse, seed=3))
    ons = sink.notes("note_on")
    assert ons and ons[0][0] == pytest.approx(T0 + 12 * DT)


# ----------------------------------------------------------------------------- accompany


def test_accompany_never_doubles_the_players_notes():
    # a model that would sound every C, E and G (and whatever is clamped)
    def chords(i, rng):
        return [n for n in range(36, 96) if n % 12 in (0, 4, 7)]
    held = [(2, 6, [60, 64]), (9, 3, [67]), (13, 5, [48, 72])]
    engine, sink, model = make("accompany", model=ScriptedModel(chords))
    events = play(held, early=0.1)
    # a note pressed mid-frame, while the model sounds it
    events += [note(T0 + 4.5 * DT, 76), off(T0 + 6.2 * DT, 76)]
    engine.run_fake(until=T0 + 30 * DT, events=events)
    player_intervals = [(T0 + k * DT - 0.1, T0 + (k + n) * DT - 0.1, p)
                        for k, n, ps in held for p in ps]
    player_intervals.append((T0 + 4.5 * DT, T0 + 6.2 * DT, 76))
    sounding: dict[int, float] = {}
    intervals = []
    for t, m in sink.sent:
        if m.type == "note_on":
            sounding[m.note] = t
        elif m.type == "note_off" and m.note in sounding:
            intervals.append((sounding.pop(m.note), t, m.note))
    assert intervals
    for a, b, n in intervals:
        for pa, pb, pn in player_intervals:
            assert not (n == pn and a < pb and pa < b), \
                f"model note {n} [{a - T0:.3f}, {b - T0:.3f}) doubles the player's"
    assert_no_hanging(sink)


def test_accompany_clamps_held_notes_and_rests_when_the_player_stops():
    engine, sink, model = make("accompany", model=ScriptedModel(lambda i, rng: [55]))
    engine.run_fake(until=T0 + 40 * DT, events=play([(2, 4, [60, 64])], early=0.1))
    clamped = [g for g in model.generated if g[60 - LOWEST_PITCH]]
    assert len(clamped) == 4
    ons = sink.notes("note_on")
    assert ons and ons[0][0] == pytest.approx(T0 + 2 * DT)
    # silent one bar after the player stopped (frames 6..13), nothing after
    assert max(t for t, _ in sink.notes()) <= T0 + (6 + 8) * DT + 1e-9


# ----------------------------------------------------------------------------- controls


def test_cc_mapping():
    assert cc_to_temperature(0) == pytest.approx(0.1)
    assert cc_to_temperature(127) == pytest.approx(2.0)
    assert cc_to_key(4) == (4, "major") and cc_to_key(21) == (9, "minor")
    assert cc_to_key(24) is None and cc_to_key(127) is None
    c = Controls(CCMap())
    assert c.handle_cc(1, 127) == "temperature" and c.temperature == pytest.approx(2.0)
    assert c.handle_cc(20, 100) == "lock" and c.lock
    assert c.handle_cc(20, 10) == "lock" and not c.lock
    assert c.handle_cc(7, 100) is None
    with pytest.raises(ValueError):
        CCMap(lock=1).check()


def test_temperature_cc_reaches_the_model():
    engine, sink, model = make("generate")
    engine.run_fake(until=T0 + 10 * DT, events=[cc(T0 + 4.5 * DT, 1, 0)])
    assert model.temperatures[0] == pytest.approx(1.0)
    assert model.temperatures[-1] == pytest.approx(0.1)


def test_scale_lock_keeps_generated_notes_in_the_scale():
    chromatic = lambda i, rng: list(range(60, 72))  # noqa: E731
    engine, sink, model = make("generate", model=ScriptedModel(chromatic))
    # lock on, key D major (CC 21 = 2): the output is moved to D and kept in its scale
    events = [cc(T_START, 21, 2), cc(T_START, 20, 127)]
    engine.run_fake(until=T0 + 6 * DT, events=events)
    d_major = {(2 + s) % 12 for s in (0, 2, 4, 5, 7, 9, 11)}
    ons = [m.note for _, m in sink.notes("note_on")]
    assert ons and all(n % 12 in d_major for n in ons)


def test_panic_cc_silences_at_once_and_play_goes_on():
    engine, sink, model = make("generate", model=ScriptedModel(lambda i, rng: [60, 67]))
    t_panic = T0 + 3.4 * DT
    engine.run_fake(until=T0 + 8 * DT, events=[cc(t_panic, 22, 127)])
    offs = [t for t, m in sink.notes("note_off")]
    assert offs[0] == pytest.approx(t_panic)
    ons = [t for t, m in sink.notes("note_on")]
    assert any(t > t_panic for t in ons)  # the next frame starts notes again
    assert_no_hanging(sink)


def test_state_cc_reports_listening_answering_idle():
    engine, sink, _ = run_phrase(state_cc=102)
    states = [m.value for _, m in sink.sent
              if m.type == "control_change" and m.control == 102]
    assert states == [1, 2, 0]


# ----------------------------------------------------------------------------- midi clock


def test_follower_tempo_from_tick_spacing_and_transport():
    f = MidiClockFollower()
    assert f.handle("clock", 0.0) is None  # stopped: tempo only
    assert f.handle("start", 0.01) == "start"
    period = 60 / 120 / 24
    for i in range(48):
        assert f.handle("clock", 0.02 + i * period) == "tick"
    assert f.bpm == pytest.approx(120, rel=1e-6)
    assert f.arrival(0) == pytest.approx(0.02)
    assert f.next_position == 48
    # tempo change to 150 bpm: followed within one beat
    p2 = 60 / 150 / 24
    t = 0.02 + 47 * period
    for i in range(24):
        t += p2
        f.handle("clock", t)
    assert f.bpm == pytest.approx(150, rel=1e-6)
    assert f.time_of_tick(80) == pytest.approx(t + 9 * p2)  # the last tick was 71
    assert f.handle("stop", t + 0.1) == "stop"
    assert not f.running and f.position_at(t + 5) == 72
    f.handle("songpos", t + 0.2, spp=8)  # bar 2 in sixteenths
    assert f.next_position == 48
    assert f.handle("continue", t + 0.3) == "continue"
    f.handle("clock", t + 0.4)
    assert f.arrival(48) == pytest.approx(t + 0.4)


def clock_events(start_t, bpm, n_ticks, first_pos=0):
    period = 60 / bpm / 24
    return [(start_t + i * period, mido.Message("clock")) for i in range(n_ticks)]


def test_midi_clock_frames_fall_on_ticks_and_follow_tempo_and_transport():
    engine, sink, _ = make("generate", clock="midi", frames_per_beat=2,
                           model=ScriptedModel(lambda i, rng: [60 + i % 2]))
    t = T_START + 0.5
    events = [(t - 0.05, mido.Message("start"))]
    ticks = clock_events(t, 120, 96)                # 4 beats at 120 bpm
    t2 = ticks[-1][0] + 60 / 150 / 24
    ticks += clock_events(t2, 150, 96)              # then 4 beats at 150 bpm
    stop_t = ticks[-1][0] + 0.005
    events += ticks + [(stop_t, mido.Message("stop"))]
    # stopped for a second (clock keeps coming), then start again from the top
    events += clock_events(stop_t + 0.01, 150, 40)
    restart = stop_t + 1.0
    events += [(restart, mido.Message("start"))]
    events += clock_events(restart + 0.02, 150, 48)
    engine.run_fake(until=restart + 1.5, events=events)

    tick_times = [t for t, m in events if m.type == "clock"]
    frame_ticks = {t for t, _ in ticks[::12]}
    frame_ticks |= {t for t, _ in clock_events(restart + 0.02, 150, 48)[::12]}
    on_times = sorted({t for t, _ in sink.notes("note_on")})
    assert len(on_times) >= 16 + 4
    for t_on in on_times:
        assert t_on in frame_ticks, f"note at {t_on} is not on a frame tick"
    # stop silences everything at once; nothing sounds while stopped
    offs_at_stop = [t for t, m in sink.notes("note_off") if t == stop_t]
    assert offs_at_stop
    assert not [t for t, m in sink.notes() if stop_t < t < restart]
    # after start, frame 0 falls on the first tick
    assert min(t for t in on_times if t > restart) == pytest.approx(restart + 0.02)
    assert tick_times
    assert_no_hanging(sink)


def test_midi_clock_song_position_pointer_sets_the_next_frame():
    engine, sink, model = make("generate", clock="midi", frames_per_beat=2,
                               model=ScriptedModel(lambda i, rng: [60 + i % 2]))
    t = T_START + 0.5
    # position 3 sixteenths = tick 18: the first frame after it is frame 2 (tick 24)
    events = [(t - 0.2, mido.Message("songpos", pos=3)),
              (t - 0.1, mido.Message("continue"))]
    ticks = clock_events(t, 120, 30)   # ticks 18..47
    events += ticks
    engine.run_fake(until=t + 1.0, events=events)
    on_times = sorted({tt for tt, _ in sink.notes("note_on")})
    assert on_times[0] == pytest.approx(ticks[6][0])     # tick 24
    assert on_times[1] == pytest.approx(ticks[18][0])    # tick 36


# ----------------------------------------------------------------------------- record


def test_record_writes_both_sides(tmp_path):
    engine, sink, _ = make("continue", model=ScriptedModel(c_major_answer), record=True)
    events = play([(0, 1, [60]), (1, 1, [62]), (2, 1, [64]), (3, 1, [65])])
    engine.run_fake(until=T0 + 30 * DT, events=events)
    path = tmp_path / "take.mid"
    write_recording(path, engine, bpm=100)
    midi = mido.MidiFile(path)
    names = [next(m.name for m in tr if m.type == "track_name") for tr in midi.tracks[1:]]
    assert names == ["player", "rnnrbm-live"]
    player_ons = [m for m in midi.tracks[1] if m.type == "note_on" and m.velocity]
    ours = [m for m in midi.tracks[2] if m.type == "note_on" and m.velocity]
    assert [m.note for m in player_ons] == [60, 62, 64, 65]
    assert len(ours) == len(sink.notes("note_on"))
    # the answer starts at frame 12: 6 beats at 480 ticks per beat
    ticks = 0
    for m in midi.tracks[2]:
        ticks += m.time
        if m.type == "note_on":
            break
    assert ticks == 12 * 240


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def real_session_factory(live_model):
    from rnnrbm_live.model.session import StepSession

    def make_session(seed=0):
        return StepSession(str(live_model), device="cpu", seed=seed)
    return make_session


def test_real_model_generates_on_the_grid(real_session_factory):
    engine, sink, _ = make("generate", model=real_session_factory(1))
    end = T0 + 40 * DT + 0.1
    engine.run_fake(until=end)
    notes = [(t, m) for t, m in sink.notes() if t < end]
    assert len({t for t, _ in notes}) >= 20
    for t, _ in notes:
        assert t == pytest.approx(T0 + round((t - T0) / DT) * DT, abs=1e-9)
    assert_no_hanging(sink)


def test_real_model_answers_in_the_players_key_with_the_scale_lock(real_session_factory):
    e_major = [64, 66, 68, 69, 71, 73, 75, 76, 71, 68, 64]
    phrase = [(i, 1, [n]) for i, n in enumerate(e_major)]
    engine, sink, _ = make("continue", model=real_session_factory(2))
    events = [cc(T_START, 20, 127)] + play(phrase)  # lock on, key: follow the player
    engine.run_fake(until=T0 + 60 * DT, events=events)
    answer = [m.note for _, m in sink.notes("note_on")]
    assert len(answer) > 10
    e_pcs = {(4 + s) % 12 for s in (0, 2, 4, 5, 7, 9, 11)}
    assert all(n % 12 in e_pcs for n in answer)
    assert_no_hanging(sink)


def test_real_model_accompanies_without_doubling(real_session_factory):
    held = [(1, 4, [60, 64, 67]), (6, 4, [62, 65, 69])]
    engine, sink, _ = make("accompany", model=real_session_factory(3))
    engine.run_fake(until=T0 + 20 * DT, events=play(held, early=0.1))
    during = [m.note for t, m in sink.notes("note_on") if T0 + DT <= t < T0 + 10 * DT]
    assert during
    for t, m in sink.notes("note_on"):
        k = round((t - T0) / DT)
        holding = {n for s, length, ns in held if s <= k < s + length for n in ns}
        assert m.note not in holding
    assert_no_hanging(sink)


def test_midi_clock_continue_answers_on_the_daws_grid():
    engine, sink, model = make("continue", clock="midi", frames_per_beat=2,
                               model=ScriptedModel(c_major_answer))
    t = T_START + 0.5
    ticks = clock_events(t, 120, 24 * 12)   # 12 beats at 120 bpm: frames every 0.25 s
    frame_t = [tt for tt, _ in ticks[::12]]
    events = [(t - 0.05, mido.Message("start"))] + ticks
    for i, n in enumerate([60, 62, 64, 65]):   # frames 0..3, a little late
        events += [note(frame_t[i] + 0.01, n), off(frame_t[i + 1] - 0.02, n)]
    engine.run_fake(until=ticks[-1][0] + 0.1, events=events)
    ons = sink.notes("note_on")
    assert len(model.listened) >= 4
    assert ons[0][0] == pytest.approx(frame_t[4 + 8])   # one bar after the phrase
    assert {t for t, _ in ons} <= set(frame_t)
    assert_no_hanging(sink)
