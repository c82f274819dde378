"""The UART host bridge: an hwgen accelerator (its Verilog top as a black box) driven over a serial line.

::

            ┌──────────────────────────────── hwgen_uart_bridge ──────────────────────────────────┐
     rx ──▶ │ UartRx ─▶ command FIFO (512 B) ─▶ executor ──load/read/start/s_axis──▶ ┌───────────┐ │
            │   │ brk                              │ replies       ◀──rdata/done/cycles── │ accelerator│ │
            │   ▼                                  ▼                                     │ (top.v)    │ │
            │ reset (bridge + accelerator)   TX arbiter ◀──────────── m_axis ──────────── └───────────┘ │
     tx ◀── │ UartTx ◀──────────────────────── (acks > replies > output beats)                         │
            └──────────────────────────────────────────────────────────────────────────────────────────┘

The byte protocol (commands, replies, credit flow control, break = reset) is defined in protocol.py, which the
host side shares. The executor takes one command at a time from the FIFO: it collects the payload bytes, then
performs the command (a ``load`` or ``read`` transfer, a ``start`` pulse, an ``s_axis`` beat, a status or identify
reply), holding the transfer until the accelerator accepts it. Output beats leave on ``m_axis`` whenever the
transmitter is free, independently of the executor, so a design that stalls its input until its output drains
cannot deadlock the bridge. Every ``ACK_BYTES`` bytes the executor has taken from the FIFO owe the host one ``'k'``.

Power-up and a break on ``rx`` hold the bridge and the accelerator in reset for :data:`RESET_CYCLES` cycles.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..arch.systolic.top import host_members
from . import protocol as P
from .uart import UartRx, UartTx, _check_divisor

BRIDGE_TOP = "hwgen_uart_bridge"
RESET_CYCLES = 16


@dataclass(frozen=True)
class BridgeConfig:
    """One bridge: the accelerator's top module ``top`` with AXI-Stream widths ``x_bits``/``y_bits``, its 32-bit
    ``design_id`` (reported by 'I') and the UART ``divisor`` (clock cycles per bit: clock frequency / baud)."""

    top: str
    x_bits: int
    y_bits: int
    design_id: int
    divisor: int

    def __post_init__(self):
        _check_divisor(self.divisor)
        for name in ("x_bits", "y_bits"):
            if not 1 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name} must be in 1..65535, got {getattr(self, name)}")
        if not 0 <= self.design_id < 1 << 32:
            raise ValueError(f"design_id must be a 32-bit unsigned integer, got {self.design_id}")

    @property
    def info(self) -> P.BridgeInfo:
        return P.BridgeInfo(self.design_id, self.x_bits, self.y_bits, P.FIFO_DEPTH, P.ACK_BYTES)

    @property
    def payload_bytes(self) -> int:
        """Width of the executor's payload register (the longest command payload), bytes."""
        return max(P.command_payload_bytes(self.x_bits).values())

    @property
    def message_bytes(self) -> int:
        """Width of the transmitter's message register (the longest reply, tag included), bytes."""
        return 1 + max(P.reply_payload_bytes(self.y_bits).values())


def bridge_config(design, divisor: int) -> BridgeConfig:
    """The bridge for a compiled or opened design (either architecture)."""
    ports = {p["name"]: p["bits"] for p in design.manifest()["ports"]}
    return BridgeConfig(design.manifest()["top"], ports["s_axis_tdata"], ports["m_axis_tdata"],
                        P.design_id(design.verilog_sha256), divisor)


def accelerator_signature(cfg: BridgeConfig) -> wiring.Signature:
    """The accelerator's ports as every hwgen top declares them (``hwgen.arch.systolic.top.host_members``)."""
    return wiring.Signature(host_members(cfg.x_bits, cfg.y_bits))


class UartBridge(wiring.Component):
    """The bridge around an instance of ``cfg.top`` (whose Verilog must be compiled alongside)."""

    def __init__(self, cfg: BridgeConfig):
        self.cfg = cfg
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.uart_rx = rx = UartRx(cfg.divisor)
        m.d.comb += rx.rx.eq(self.rx)

        # ---- reset: power-up and a break hold the bridge domain and the accelerator in reset for RESET_CYCLES
        # cycles (also on boards whose sync domain has no reset)
        hold = Signal(range(RESET_CYCLES + 1), init=RESET_CYCLES)
        with m.If(rx.brk):
            m.d.sync += hold.eq(RESET_CYCLES)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        reset = Signal()
        m.d.comb += reset.eq(ResetSignal("sync", allow_reset_less=True) | (hold != 0))
        m.domains.bridge = ClockDomain("bridge", local=True)
        m.d.comb += [ClockSignal("bridge").eq(ClockSignal("sync")), ResetSignal("bridge").eq(reset)]

        # ---- the accelerator
        acc = accelerator_signature(cfg).create()
        ports = {}
        for path, member, value in accelerator_signature(cfg).flatten(acc):
            prefix = "i_" if member.flow == In else "o_"
            ports[prefix + "__".join(str(p) for p in path)] = Value.cast(value)
        m.submodules.accelerator = Instance(cfg.top, i_clk=ClockSignal("sync"), i_rst=reset, **ports)

        core = Module()
        m.submodules.core = DomainRenamer("bridge")(core)
        tx = self._executor(core, rx, acc)
        m.d.comb += self.tx.eq(tx.tx)
        return m

    def _executor(self, m: Module, rx: UartRx, acc) -> UartTx:
        """Command FIFO, credits, executor and transmitter (in ``m``, the bridge domain); returns the UartTx."""
        cfg = self.cfg
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=P.FIFO_DEPTH)
        overflow = Signal()
        bad_command = Signal()
        m.d.comb += [fifo.w_data.eq(rx.o.payload), fifo.w_en.eq(rx.o.valid)]
        with m.If(rx.o.valid & ~fifo.w_rdy):
            m.d.sync += overflow.eq(1)

        # ---- credits: one 'k' owed per ACK_BYTES bytes taken from the FIFO
        popped = Signal(range(P.ACK_BYTES))
        owed = Signal(range(P.FIFO_DEPTH // P.ACK_BYTES + 2))
        take = Signal()
        ack_sent = Signal()
        wrap = take & (popped == P.ACK_BYTES - 1)
        with m.If(take):
            m.d.sync += popped.eq(popped + 1)
        m.d.sync += owed.eq(owed + wrap - ack_sent)
        m.d.comb += fifo.r_en.eq(take)

        # ---- replies: one slot, filled by the executor, emptied by the transmitter
        reply_valid = Signal()
        reply_taken = Signal()
        reply = Signal(8 * cfg.message_bytes)
        reply_len = Signal(range(cfg.message_bytes + 1))
        with m.If(reply_taken):
            m.d.sync += reply_valid.eq(0)

        def send_reply(tag: int, payload, length: int):
            m.d.sync += [reply_valid.eq(1), reply.eq(Cat(Const(tag, 8), payload)), reply_len.eq(1 + length)]

        status = Cat(acc.busy, acc.done, overflow, bad_command, Const(0, 4), acc.cycles)

        # ---- executor
        lengths = P.command_payload_bytes(cfg.x_bits)
        command = Signal(8)
        payload = Signal(8 * cfg.payload_bytes)
        index = Signal(range(cfg.payload_bytes + 1))
        remaining = Signal(range(cfg.payload_bytes + 1))
        x_bytes = P.beat_bytes(cfg.x_bits)
        with m.FSM():
            with m.State("command"):
                m.d.comb += take.eq(fifo.r_rdy)
                with m.If(fifo.r_rdy):
                    m.d.sync += [command.eq(fifo.r_data), index.eq(0)]
                    with m.Switch(fifo.r_data):
                        for code, size in lengths.items():
                            with m.Case(code):
                                m.d.sync += remaining.eq(size)
                                m.next = "payload" if size else "execute"
                        with m.Default():
                            m.d.sync += bad_command.eq(1)
            with m.State("payload"):
                m.d.comb += take.eq(fifo.r_rdy)
                with m.If(fifo.r_rdy):
                    m.d.sync += [payload.word_select(index, 8).eq(fifo.r_data), index.eq(index + 1),
                                 remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.next = "execute"
            with m.State("execute"):
                with m.Switch(command):
                    with m.Case(P.CMD_LOAD):
                        m.d.comb += [acc.load.valid.eq(1), Value.cast(acc.load.payload).eq(payload)]
                        with m.If(acc.load.ready):
                            m.next = "command"
                    with m.Case(P.CMD_READ):
                        m.d.comb += [acc.read.valid.eq(1), Value.cast(acc.read.payload).eq(payload)]
                        with m.If(acc.read.ready):
                            m.next = "rdata"
                    with m.Case(P.CMD_START):
                        m.d.comb += acc.start.eq(1)
                        m.next = "command"
                    with m.Case(P.CMD_BEAT, P.CMD_BEAT_LAST):
                        m.d.comb += [acc.s_axis_tvalid.eq(1), acc.s_axis_tdata.eq(payload[:8 * x_bytes]),
                                     acc.s_axis_tlast.eq(command == P.CMD_BEAT_LAST)]
                        with m.If(acc.s_axis_tready):
                            m.next = "command"
                    with m.Case(P.CMD_STATUS, P.CMD_WAIT):
                        with m.If(~reply_valid & ((command == P.CMD_STATUS) | acc.done)):
                            send_reply(P.TAG_STATUS, status, P.STATUS_BYTES)
                            m.next = "command"
                    with m.Case(P.CMD_IDENT):
                        with m.If(~reply_valid):
                            send_reply(P.TAG_IDENT, Const(int.from_bytes(cfg.info.pack(), "little"),
                                                          8 * P.IDENT_BYTES), P.IDENT_BYTES)
                            m.next = "command"
            with m.State("rdata"):
                m.d.comb += acc.rdata.ready.eq(~reply_valid)
                with m.If(acc.rdata.valid & ~reply_valid):
                    send_reply(P.TAG_RDATA, acc.rdata.payload, P.RDATA_BYTES)
                    m.next = "command"

        # ---- transmitter: acks first, then replies, then output beats
        m.submodules.uart_tx = tx = UartTx(cfg.divisor)
        message = Signal(8 * cfg.message_bytes)
        left = Signal(range(cfg.message_bytes + 1))
        y_bytes = P.beat_bytes(cfg.y_bits)
        m.d.comb += [tx.i.payload.eq(message[:8]), tx.i.valid.eq(left != 0)]
        with m.If(tx.i.valid & tx.i.ready):
            m.d.sync += [message.eq(message[8:]), left.eq(left - 1)]
        with m.If(left == 0):
            with m.If(owed != 0):
                m.d.comb += ack_sent.eq(1)
                m.d.sync += [message.eq(P.TAG_ACK), left.eq(1)]
            with m.Elif(reply_valid):
                m.d.comb += reply_taken.eq(1)
                m.d.sync += [message.eq(reply), left.eq(reply_len)]
            with m.Elif(acc.m_axis_tvalid):
                m.d.comb += acc.m_axis_tready.eq(1)
                tag = Mux(acc.m_axis_tlast, Const(P.TAG_BEAT_LAST, 8), Const(P.TAG_BEAT, 8))
                m.d.sync += [message.eq(Cat(tag, acc.m_axis_tdata)), left.eq(1 + y_bytes)]
        return tx
