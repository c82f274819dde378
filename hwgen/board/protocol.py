"""The UART host-bridge protocol: byte formats (shared with the hardware in bridge.py) and the host side.

One module for both ends of the wire, so the bridge hardware, ``hwgen run-board`` (pyserial) and the cocotb test
(a simulated serial port) cannot disagree.

Host → bridge commands (one command byte, then a fixed payload, little-endian)::

    'I'                      identify: the bridge answers 'i' (BridgeInfo)
    'L' + 8 bytes            load: one host-protocol LOAD row (target | bank | addr | lane | data, field 0 at bit 0)
    'R' + 4 bytes            read: one READ request; answered 'r' + 4 bytes (rdata)
    'S'                      start: a one-cycle start pulse
    'D' / 'E' + X bytes      one s_axis beat (X = ceil(x_bits / 8)); 'E' sets tlast
    'C'                      status now: answered 'c' + flags + cycles
    'W'                      wait for done, then answer like 'C'

Bridge → host messages (a tag byte, then a fixed payload)::

    'k'                      ACK_BYTES more command bytes consumed (credit)
    'd' / 'e' + Y bytes      one m_axis beat (Y = ceil(y_bits / 8)); 'e' when tlast was set
    'r' + 4 bytes            rdata answer
    'c' + 1 + 4 bytes        flags (STATUS_*), cycles counter
    'i' + 17 bytes           MAGIC, PROTOCOL_VERSION, design id (4), x_bits (2), y_bits (2), FIFO_DEPTH (2),
                             ACK_BYTES (2)

Flow control: a UART cannot be paused, so commands land in a FIFO_DEPTH-byte FIFO and the host keeps at most
FIFO_DEPTH bytes unacknowledged (credit ``FIFO_DEPTH − sent + ACK_BYTES · acks``). A *break* (the line held low for
a frame or more) resets the bridge and the accelerator: every session starts with one, so a session that died
mid-command leaves nothing behind.

Host side: :class:`BridgeClient` speaks the protocol over any object with pyserial's ``write``/``read``/
``send_break``/``reset_input_buffer`` (a ``serial.Serial``, or the cocotb testbench's simulated port);
:func:`plan_run` turns a design and inputs into a :class:`RunPlan` (what to load, stream and read) and
:func:`decode_run` turns a :class:`RunResult` back into output codes, the same way for every transport.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from ..errors import HwgenError

PROTOCOL_VERSION = 1
DEFAULT_BAUD = 115200
MAGIC = b"hwgn"
FIFO_DEPTH = 512                  # command FIFO (bytes): one iCE40 SB_RAM40_4K as 512 × 8
ACK_BYTES = 64                    # the bridge sends one 'k' per ACK_BYTES command bytes it consumed

CMD_IDENT, CMD_LOAD, CMD_READ, CMD_START = b"I"[0], b"L"[0], b"R"[0], b"S"[0]
CMD_BEAT, CMD_BEAT_LAST, CMD_STATUS, CMD_WAIT = b"D"[0], b"E"[0], b"C"[0], b"W"[0]
TAG_ACK, TAG_BEAT, TAG_BEAT_LAST = b"k"[0], b"d"[0], b"e"[0]
TAG_RDATA, TAG_STATUS, TAG_IDENT = b"r"[0], b"c"[0], b"i"[0]

LOAD_BYTES = 8                    # a LOAD row (63 bits)
READ_BYTES = 4                    # a READ request (31 bits)
RDATA_BYTES = 4
STATUS_BYTES = 5                  # flags, cycles (32 bits)
IDENT_BYTES = 17

STATUS_BUSY, STATUS_DONE, STATUS_OVERFLOW, STATUS_BAD_COMMAND = 1, 2, 4, 8


def beat_bytes(bits: int) -> int:
    """Bytes carrying one stream beat of ``bits`` bits."""
    return max(1, -(-bits // 8))


def command_payload_bytes(x_bits: int) -> dict[int, int]:
    """Payload bytes after each command byte."""
    return {CMD_IDENT: 0, CMD_LOAD: LOAD_BYTES, CMD_READ: READ_BYTES, CMD_START: 0, CMD_BEAT: beat_bytes(x_bits),
            CMD_BEAT_LAST: beat_bytes(x_bits), CMD_STATUS: 0, CMD_WAIT: 0}


def reply_payload_bytes(y_bits: int) -> dict[int, int]:
    """Payload bytes after each message tag."""
    return {TAG_ACK: 0, TAG_BEAT: beat_bytes(y_bits), TAG_BEAT_LAST: beat_bytes(y_bits), TAG_RDATA: RDATA_BYTES,
            TAG_STATUS: STATUS_BYTES, TAG_IDENT: IDENT_BYTES}


def design_id(verilog_sha256: str) -> int:
    """The 32-bit design id the bridge reports: the first 8 hex digits of the accelerator Verilog's sha256."""
    return int(verilog_sha256[:8], 16)


def pack_load(row) -> bytes:
    """A load row ``(target, bank, addr, lane, value)`` as the 8 payload bytes of 'L'."""
    from ..cocotb_backend import pack_load as payloads

    return payloads([row])[0].to_bytes(LOAD_BYTES, "little")


def pack_read(row) -> bytes:
    """A read request ``(target, bank, addr, lane)`` as the 4 payload bytes of 'R' (READ layout, field 0 first)."""
    from amaranth import Shape

    from ..arch.systolic.top import READ

    value = 0
    for (name, f), part in zip(READ, row):
        width = Shape.cast(f.shape).width
        if not 0 <= int(part) < 1 << width:
            raise ValueError(f"read request {tuple(row)}: {name} {part} does not fit in {width} bits")
        value |= int(part) << f.offset
    return value.to_bytes(READ_BYTES, "little")


# ------------------------------------------------------------------------------------------------------ host side
class Port(Protocol):
    """What :class:`BridgeClient` needs of a serial port (a subset of ``serial.Serial``)."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    @property
    def in_waiting(self) -> int: ...

    def send_break(self, duration: float = 0.25) -> None: ...

    def reset_input_buffer(self) -> None: ...


class BridgeError(HwgenError):
    """The bridge did not answer, answered something unexpected, or belongs to another design."""


@dataclass(frozen=True)
class BridgeInfo:
    """What the bridge says about itself ('I')."""

    design_id: int
    x_bits: int
    y_bits: int
    fifo_depth: int
    ack_bytes: int
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        return (MAGIC + bytes([self.version]) + self.design_id.to_bytes(4, "little")
                + b"".join(v.to_bytes(2, "little") for v in (self.x_bits, self.y_bits, self.fifo_depth,
                                                             self.ack_bytes)))

    @classmethod
    def unpack(cls, data: bytes) -> BridgeInfo:
        if data[:4] != MAGIC:
            raise BridgeError(f"the device is not an hwgen UART bridge (identify answered {data[:4]!r})")
        fields = [int.from_bytes(data[9 + 2 * i:11 + 2 * i], "little") for i in range(4)]
        return cls(int.from_bytes(data[5:9], "little"), *fields, version=data[4])


@dataclass
class RunPlan:
    """One run on the bridge: load ``loads`` (rows ``target bank addr lane value``), pulse start, stream ``x``
    (beats, tlast ``x_last``), collect ``y_beats`` output beats, wait for done if ``wait_done``, then answer
    ``reads`` (rows ``target bank addr lane``) and report the cycle counter."""

    loads: list[tuple[int, ...]]
    x: list[int] = field(default_factory=list)
    x_last: list[int] = field(default_factory=list)
    y_beats: int = 0
    wait_done: bool = True
    reads: list[tuple[int, ...]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {**asdict(self), "x": [f"{v:x}" for v in self.x]}

    @classmethod
    def from_json(cls, doc: dict) -> RunPlan:
        return cls(loads=[tuple(r) for r in doc["loads"]], x=[int(v, 16) for v in doc["x"]], x_last=doc["x_last"],
                   y_beats=doc["y_beats"], wait_done=doc["wait_done"], reads=[tuple(r) for r in doc["reads"]])


@dataclass
class RunResult:
    """What a run returned: output beats (``y``, ``y_last``), read answers, the status flags and cycle counter
    (with ``wait_done``: at done, i.e. start → done; otherwise when the last output beat had arrived), and the
    byte counts each way."""

    y: list[int]
    y_last: list[int]
    answers: list[int]
    cycles: int
    flags: int
    bytes_sent: int
    bytes_received: int
    seconds: float

    def to_json(self) -> dict:
        return {**asdict(self), "y": [f"{v:x}" for v in self.y]}

    @classmethod
    def from_json(cls, doc: dict) -> RunResult:
        return cls(**{**doc, "y": [int(v, 16) for v in doc["y"]]})


class BridgeClient:
    """The host end of the bridge over ``port``. ``timeout``: seconds without a byte from the bridge before
    :class:`BridgeError` (the port's own read timeout should be shorter); ``clock``: the time source for it."""

    def __init__(self, port: Port, timeout: float = 5.0, clock=time.monotonic, break_seconds: float = 0.05):
        self.port = port
        self.timeout = timeout
        self.clock = clock
        self.break_seconds = break_seconds
        self.info: BridgeInfo | None = None
        self._credits = FIFO_DEPTH
        self._ack_bytes = ACK_BYTES
        self._rx = bytearray()
        self._replies: list[tuple[int, bytes]] = []
        self.y: list[int] = []
        self.y_last: list[int] = []
        self.sent = 0
        self.received = 0

    # -------------------------------------------------------------------------------------------- session
    def connect(self, expected_id: int | None = None) -> BridgeInfo:
        """Reset the bridge (a break), identify it and check its design id against ``expected_id``."""
        self.port.send_break(self.break_seconds)
        self.port.reset_input_buffer()
        self._rx.clear()
        self._replies.clear()
        self.y, self.y_last = [], []
        self._credits = FIFO_DEPTH
        self._send(bytes([CMD_IDENT]))
        info = BridgeInfo.unpack(self._reply(TAG_IDENT))
        if info.version != PROTOCOL_VERSION:
            raise BridgeError(f"the bridge speaks protocol version {info.version}, this hwgen {PROTOCOL_VERSION}")
        if info.fifo_depth != FIFO_DEPTH or info.ack_bytes != ACK_BYTES:
            raise BridgeError(f"the bridge has a {info.fifo_depth}-byte FIFO acknowledged every {info.ack_bytes} "
                              f"bytes; this hwgen expects {FIFO_DEPTH} and {ACK_BYTES}")
        if expected_id is not None and info.design_id != expected_id:
            raise BridgeError(f"the board runs design {info.design_id:08x}, not {expected_id:08x}: build and "
                              "program its bitstream with `hwgen board` first")
        self.info = info
        return info

    def execute(self, plan: RunPlan) -> RunResult:
        """Run ``plan`` (after :meth:`connect`) and return what came back."""
        info = self._require_info()
        started = self.clock()
        sent0, received0 = self.sent, self.received
        self.y, self.y_last = [], []
        self._send(b"".join(bytes([CMD_LOAD]) + pack_load(row) for row in plan.loads) + bytes([CMD_START]))
        width = beat_bytes(info.x_bits)
        self._send(b"".join(bytes([CMD_BEAT_LAST if last else CMD_BEAT]) + beat.to_bytes(width, "little")
                            for beat, last in zip(plan.x, plan.x_last)))
        deadline = self._deadline()
        while len(self.y) < plan.y_beats:
            if self._poll():
                deadline = self._deadline()
            elif self.clock() > deadline:
                raise BridgeError(f"no output from the bridge for {self.timeout:g} s: {len(self.y)} of "
                                  f"{plan.y_beats} output beats arrived")
        flags, cycles = self.status(wait=plan.wait_done)
        answers = self.read(plan.reads)
        if len(self.y) != plan.y_beats:
            raise BridgeError(f"the bridge sent {len(self.y)} output beats, expected {plan.y_beats}")
        return RunResult(list(self.y), list(self.y_last), answers, cycles, flags, self.sent - sent0,
                         self.received - received0, self.clock() - started)

    def status(self, wait: bool = False) -> tuple[int, int]:
        """(flags, cycles) now, or once ``done`` is high with ``wait``."""
        self._send(bytes([CMD_WAIT if wait else CMD_STATUS]))
        reply = self._reply(TAG_STATUS)
        flags = reply[0]
        if flags & STATUS_OVERFLOW:
            raise BridgeError("the bridge's command FIFO overflowed (bytes were lost): is another program using "
                              "the serial port?")
        if flags & STATUS_BAD_COMMAND:
            raise BridgeError("the bridge received an unknown command byte (the serial link corrupted data?)")
        return flags, int.from_bytes(reply[1:5], "little")

    def read(self, rows) -> list[int]:
        """Answers (unsigned 32-bit) to read requests ``(target, bank, addr, lane)``, in order."""
        answers = []
        requests = [bytes([CMD_READ]) + pack_read(row) for row in rows]
        window = max(1, FIFO_DEPTH // (1 + READ_BYTES) // 2)
        for first in range(0, len(requests), window):
            batch = requests[first:first + window]
            self._send(b"".join(batch))
            answers += [int.from_bytes(self._reply(TAG_RDATA), "little") for _ in batch]
        return answers

    # -------------------------------------------------------------------------------------------- bytes
    def _require_info(self) -> BridgeInfo:
        if self.info is None:
            raise BridgeError("not connected: call connect() first")
        return self.info

    def _deadline(self) -> float:
        return self.clock() + self.timeout

    def _send(self, data: bytes) -> None:
        """Write ``data`` as credits allow, taking in what the bridge sends meanwhile."""
        view = memoryview(data)
        deadline = self._deadline()
        while view:
            if self._credits > 0:
                chunk = view[:self._credits]
                self.port.write(bytes(chunk))
                self._credits -= len(chunk)
                self.sent += len(chunk)
                view = view[len(chunk):]
                deadline = self._deadline()
            elif self._poll():
                deadline = self._deadline()
            elif self.clock() > deadline:
                raise BridgeError(f"the bridge took no command bytes for {self.timeout:g} s (no acknowledgement)")

    def _reply(self, tag: int) -> bytes:
        """The payload of the next ``tag`` reply (output beats and credits are taken in meanwhile)."""
        deadline = self._deadline()
        while True:
            for index, (got, payload) in enumerate(self._replies):
                if got == tag:
                    del self._replies[index]
                    return payload
            if self._poll():
                deadline = self._deadline()
            elif self.clock() > deadline:
                raise BridgeError(f"no {chr(tag)!r} answer from the bridge within {self.timeout:g} s (wrong port, "
                                  "wrong baud rate, or the board is not programmed with an hwgen bitstream?)")

    def _poll(self) -> bool:
        """Read what has arrived (waiting up to the port's timeout for one byte) and parse whole messages; True if
        any byte arrived."""
        data = self.port.read(max(1, self.port.in_waiting))
        if not data:
            return False
        self.received += len(data)
        self._rx += data
        lengths = reply_payload_bytes(self.info.y_bits if self.info else 8)
        while self._rx:
            tag = self._rx[0]
            if tag not in lengths:
                raise BridgeError(f"unexpected byte 0x{tag:02x} from the bridge (noise on the line, or not an hwgen "
                                  "bridge?)")
            size = 1 + lengths[tag]
            if len(self._rx) < size:
                break
            payload = bytes(self._rx[1:size])
            del self._rx[:size]
            if tag == TAG_ACK:
                self._credits += self._ack_bytes
            elif tag in (TAG_BEAT, TAG_BEAT_LAST):
                self.y.append(int.from_bytes(payload, "little"))
                self.y_last.append(int(tag == TAG_BEAT_LAST))
            else:
                self._replies.append((tag, payload))
        return True


# ------------------------------------------------------------------------------------------------------ runs
def plan_run(design, x: np.ndarray, stream: bool | None = None) -> tuple[RunPlan, np.ndarray, np.ndarray]:
    """The :class:`RunPlan` running ``x`` on ``design`` (systolic: preloaded into the scratchpad when it fits and
    ``stream`` is not True, else streamed; dataflow: streamed), the input codes and the golden output codes."""
    from ..design import golden_codes, read_rows

    x = np.asarray(x, np.float32)
    if x.ndim == 0 or len(x) == 0:
        raise HwgenError("run-board needs at least one sample (inputs of shape (N, ...) with N ≥ 1)")
    samples = len(x)
    codes_in, expected = golden_codes(design.model, x)
    program = design.program
    if getattr(design, "arch", "systolic") == "dataflow":
        if stream is False:
            raise HwgenError("the dataflow architecture always streams (drop --preload)")
        beats, last = program.pack_inputs(codes_in)
        loads = read_rows(design.images) if design.images else program.load_rows
        return (RunPlan(list(loads), [int(b) for b in beats], [int(b) for b in last],
                        samples * design.config.out_beats, wait_done=False), codes_in, expected)
    static = design._static_rows()
    if design._streams(samples, stream):
        beats, last = design._input_beats(codes_in)
        return (RunPlan(static + program.program_rows(samples, stream=True), beats, last,
                        samples * program.y_words), codes_in, expected)
    if samples > program.batch:
        raise HwgenError(f"--preload holds at most {program.batch} samples (the design's batch), got {samples}")
    return (RunPlan(static + program.program_rows(samples) + program.input_rows(codes_in),
                    reads=[tuple(r) for r in program.output_reads(samples)]), codes_in, expected)


def decode_run(design, plan: RunPlan, result: RunResult, samples: int) -> np.ndarray:
    """The output codes of a run (as the simulators return them, before comparison with the golden model)."""
    program = design.program
    if getattr(design, "arch", "systolic") == "dataflow":
        return program.unpack_outputs(result.y)
    if plan.reads:
        return np.asarray(result.answers, np.uint32).view(np.int32).astype(np.int64)
    return program.output_codes(result.y, samples)
