"""Shared memory between the engine and its JACK helper process (jack_helper.py): named
counters and fixed-size single-producer single-consumer rings, in one block both map.

The block is a memfd (or an unlinked temporary file where there is none) that the engine
creates and the helper inherits by file descriptor, so nothing is left behind in /dev/shm
whichever way either process ends. Its layout follows from the constants here alone, so
both sides agree on it without a handshake.

Every word is a 64-bit integer, read and written whole (aligned, so never torn). Each
counter and each ring index is written by one side only:
- the engine writes `floor`, `frame_ticks` and the indices it produces (timed and urgent
  output) or consumes (input);
- the helper writes everything else.
No locks: neither side ever waits for the other inside a JACK period.

Publishing a ring slot (the memory-ordering assumption): the producer writes the slot's
fields, then its stamp (a mix of the slot's sequence number and its fields), then the
ring's write index, last. The consumer reads the write index, then the slot, and takes
the slot only if the stamp matches the fields it read for the sequence number it
expects. On x86-64 (TSO) stores become visible in the order they were made and loads are
not reordered with older loads, so index-last alone is enough and the stamp always
matches. On a weakly ordered CPU (ARM64) CPython issues no barrier between the stores, so
the index could become visible before the slot: then the stamp (stale from the slot's
previous lap, or not matching the fields) tells the consumer the slot is not whole yet,
and it looks again on its next pass; nothing is read half-written. (The same CPUs could
in principle let the producer see the consumer's read index move before the consumer's
loads of that slot finished; the interpreter's hundreds of instructions between them make
that window theoretical, and a C callback with real barriers is the way to close it.)
"""

from __future__ import annotations

import mmap
import os
import tempfile

LINE = 8                    # words in a 64-byte cache line: each index gets its own
RING_SIZE = 4096            # slots; a power of two. Several seconds of dense music.
MAX_SHORT = 3               # bytes of the longest message a slot holds (no sysex)
TEXT_BYTES = 512            # the helper's last words: why the server dropped us, or a bug
STAMP_MASK = (1 << 62) - 1
WRAP = 1 << 32              # JACK's frame counter is 32 bits; both sides unwrap it


def unwrapped(raw: int, before: int) -> int:
    """The 32-bit frame count `raw`, unwrapped next to `before` (an unwrapped count): the
    nearest count with these low 32 bits. A count a little behind the last one (JACK's
    frame estimate read before the first period started, then that period's start) is
    not a wrap; only a jump of more than half the range is."""
    delta = (raw - before) % WRAP
    return before + delta - (WRAP if delta >= WRAP // 2 else 0)

# The counters, one cache line each. Engine-written: FLOOR and FRAME_TICKS (MIDI clock
# ticks per grid frame; 0 off a clock). Helper-written: the rest.
(FLOOR, FRAME_TICKS, CYCLE_BASE, CYCLES, LATE, LOST, MAX_LATE, XRUNS, DROPPED, SHUT_DOWN,
 CALLBACK_ERROR, N_CELLS) = range(12)

# A timed slot's tick: a song position (>= 0), NOT_ON_TICK (placed by its frame), or
# NEXT_START: the first frame tick after the next Start or Continue (a frame computed
# while the DAW is stopped, played the moment it starts).
NOT_ON_TICK = -1
NEXT_START = -2

# The rings: (name, fields per slot). Output: timed (frame, epoch, tick, data) and urgent
# (data); input: (frame, data). `data` is a packed message (see pack).
RINGS = (("timed", 4), ("urgent", 1), ("input", 2))


def pack(data: bytes) -> int:
    """A MIDI message of up to three bytes as one word: its length, then its bytes."""
    n = len(data)
    if not 0 < n <= MAX_SHORT:
        raise ValueError(f"a shared ring slot holds 1 to {MAX_SHORT} bytes, got {n}")
    return n << 24 | int.from_bytes(bytes(data).ljust(MAX_SHORT, b"\0"), "big")


def unpack(word: int) -> bytes:
    return (word & 0xFFFFFF).to_bytes(MAX_SHORT, "big")[:word >> 24]


def stamp(seq: int, fields) -> int:
    """The slot's check word: its sequence number mixed with its fields."""
    h = seq
    for value in fields:
        h = (h * 1000003 ^ value) & STAMP_MASK
    return h


class SlotRing:
    """A single-producer single-consumer queue of fixed-size slots of `nfields` words, in
    shared words: the write index, the read index (a cache line each), then the slots."""

    def __init__(self, words: memoryview, base: int, size: int, nfields: int):
        if size & (size - 1):
            raise ValueError(f"ring size must be a power of two, got {size}")
        self.words = words
        self.size, self.mask, self.nfields = size, size - 1, nfields
        self.stride = nfields + 1               # the fields, then the stamp
        self.w_at, self.r_at = base, base + LINE
        self.slots = base + 2 * LINE

    @staticmethod
    def words_needed(size: int, nfields: int) -> int:
        return 2 * LINE + size * (nfields + 1)

    def __len__(self) -> int:
        return self.words[self.w_at] - self.words[self.r_at]

    # ------------------------------------------------------------ producer

    def push(self, *fields: int) -> bool:
        """Publish one slot; False (nothing queued) when the ring is full."""
        words = self.words
        w = words[self.w_at]
        if w - words[self.r_at] > self.mask:
            return False
        at = self.slots + (w & self.mask) * self.stride
        for k, value in enumerate(fields):
            words[at + k] = value
        words[at + self.nfields] = stamp(w + 1, fields)
        words[self.w_at] = w + 1                # last: see the module doc
        return True

    # ------------------------------------------------------------ consumer

    def peek(self) -> int:
        """The word offset of the oldest published slot; -1 when there is none (or it is
        not yet whole to this CPU)."""
        words = self.words
        r = words[self.r_at]
        if r == words[self.w_at]:
            return -1
        at = self.slots + (r & self.mask) * self.stride
        n = self.nfields
        if words[at + n] != stamp(r + 1, words[at:at + n]):
            return -1
        return at

    def advance(self) -> None:
        """Done with the slot peek() gave."""
        self.words[self.r_at] += 1

    def pop(self) -> tuple[int, ...] | None:
        at = self.peek()
        if at < 0:
            return None
        fields = tuple(self.words[at:at + self.nfields])
        self.advance()
        return fields

    def skip_all(self) -> None:
        """Consumer: forget everything published so far."""
        self.words[self.r_at] = self.words[self.w_at]


class SharedBlock:
    """The counters and rings, mapped from `fd` (a new block when fd is None)."""

    def __init__(self, fd: int | None = None, ring_size: int = RING_SIZE):
        n_words = N_CELLS * LINE + sum(SlotRing.words_needed(ring_size, nfields)
                                       for _, nfields in RINGS)
        size = n_words * 8 + TEXT_BYTES
        if fd is None:
            fd = _new_fd()
            os.ftruncate(fd, size)
        self.fd = fd
        self._map = mmap.mmap(fd, size)
        self.words = memoryview(self._map).cast("q")
        self._text_at = n_words * 8
        base = N_CELLS * LINE
        for name, nfields in RINGS:
            setattr(self, name, SlotRing(self.words, base, ring_size, nfields))
            base += SlotRing.words_needed(ring_size, nfields)

    def __getitem__(self, cell: int) -> int:
        return self.words[cell * LINE]

    def __setitem__(self, cell: int, value: int) -> None:
        self.words[cell * LINE] = value

    def set_text(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")[:TEXT_BYTES - 1]
        self._map[self._text_at:self._text_at + len(raw) + 1] = raw + b"\0"

    def text(self) -> str:
        raw = self._map[self._text_at:self._text_at + TEXT_BYTES]
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def close(self) -> None:
        """Close the file descriptor; the mapping stays (the counters stay readable, for
        the final stats) until this object goes."""
        try:
            os.close(self.fd)
        except OSError:
            pass


def _new_fd() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("rnnrbm-jack", getattr(os, "MFD_CLOEXEC", 0))
    with tempfile.TemporaryFile(prefix="rnnrbm-jack-") as f:   # macOS: no memfd
        return os.dup(f.fileno())
