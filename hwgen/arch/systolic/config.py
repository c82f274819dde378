"""Configuration of the systolic-array generator: one frozen dataclass, derived widths as properties."""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2

from ...compat import cached_property

DATAFLOWS = ("os", "ws")
MAX_FIXED_STEPS = 4         # fixed-point stage fields per instruction (controller.INSTRUCTION)
LANE_STAGE_CYCLES = 3       # cycles of a requant lane stage (SystolicConfig.lane_stage_cycles)
DECODE_COPIES = 4           # copies of the controllers' DECODE flag, each loading a share of the per-layer registers
STEP_GROUPS = 4             # groups of a pixel walk's registers, each stepped under flags of its own (walk.py)


def index_range(count: int) -> range:
    """A signal range for indices 0..count-1, at least one bit wide (no zero-width wires in the Verilog)."""
    return range(max(2, count))


def _bits_for(count: int) -> int:
    """Address bits for ``count`` entries (at least 1)."""
    return max(1, (count - 1).bit_length())


@dataclass(frozen=True)
class SystolicConfig:
    """An R×C systolic array with its scratchpads.

    ``a_bits``/``w_bits`` are the widest activation code and weight (both stored signed, so an unsigned 8-bit code
    needs ``a_bits=8`` and is held in ``a_bits + 1`` bits); ``k_max`` the longest dot product; ``out_bits`` the
    widest requantized output (thresholds are searched in ``out_bits`` pipeline stages). Depths are in words per
    bank. Everything derived (operand and accumulator widths, address widths) is a property.

    Fixed-point hardware (hls4ml models, hwgen.arch.fixed) is optional: ``product_rounding`` gives every PE a
    rounding shifter for products (shift and mode per layer, from the instruction), ``fixed_steps`` gives every
    requant lane that many fixed-point stages (bias per channel slot, shift, modes and width per layer).
    """

    rows: int = 8
    cols: int = 8
    dataflow: str = "os"
    a_bits: int = 8
    w_bits: int = 8
    k_max: int = 1024
    out_bits: int = 8
    act_depth: int = 1024           # words (cols codes each) per activation bank (one bank per array row)
    weight_depth: int = 4096        # weights per weight bank (one bank per array column)
    slot_depth: int = 64            # threshold slots (one per output channel group) per requant lane
    out_depth: int = 256            # words (cols accumulators each) per output bank
    prog_depth: int = 16            # program instructions (one per layer)
    acc_depth: int = 64             # ws: partial sums per column kept between K tiles (output pixels per run)
    max_pool: bool = False          # PEs have a max mode (MaxPool layers); without it they are plain MACs
    product_rounding: bool = False  # PEs round each product (hls4ml's products cast to a coarser accumulator)
    fixed_steps: int = 0            # fixed-point stages per requant lane (0: thresholds and passthrough only)
    broken_pe: tuple[int, int] | None = None   # test hook: this PE's multiplier returns a*w + 1

    def __post_init__(self) -> None:
        _check_range("rows", self.rows, 1, 64)
        _check_range("cols", self.cols, 1, 64)
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}")
        _check_range("a_bits", self.a_bits, 1, 16)
        _check_range("w_bits", self.w_bits, 1, 16)
        _check_range("k_max", self.k_max, 1, 1 << 16)
        _check_range("out_bits", self.out_bits, 1, 10)
        _check_range("act_depth", self.act_depth, 2, 1 << 16)
        _check_range("weight_depth", self.weight_depth, 2, 1 << 16)
        _check_range("slot_depth", self.slot_depth, 2, 1 << 10)
        _check_range("out_depth", self.out_depth, 2, 1 << 16)
        _check_range("prog_depth", self.prog_depth, 2, 256)
        _check_range("acc_depth", self.acc_depth, 2, 1 << 16)
        if not isinstance(self.max_pool, bool):
            raise ValueError(f"max_pool must be a bool, got {self.max_pool!r}")
        if self.product_rounding not in (0, 1):
            raise ValueError(f"product_rounding must be True or False (1 or 0), got {self.product_rounding!r}")
        object.__setattr__(self, "product_rounding", bool(self.product_rounding))
        _check_range("fixed_steps", self.fixed_steps, 0, MAX_FIXED_STEPS)
        if self.acc_bits > 30:
            raise ValueError(f"accumulator width {self.acc_bits} bits (a_bits={self.a_bits}, w_bits={self.w_bits}, "
                             f"k_max={self.k_max}) exceeds 30; reduce a bit width or k_max")
        if self.broken_pe is not None and not (0 <= self.broken_pe[0] < self.rows and
                                               0 <= self.broken_pe[1] < self.cols):
            raise ValueError(f"broken_pe {self.broken_pe} is outside the {self.rows}×{self.cols} array")

    @property
    def store_bits(self) -> int:
        """Bits of one stored activation code (signed storage of signed or unsigned codes)."""
        return self.a_bits + 1

    @property
    def operand_bits(self) -> int:
        """Bits of ``code - zero_point`` entering the array (signed)."""
        return self.a_bits + 2

    @cached_property
    def acc_bits(self) -> int:
        """Accumulator width: the worst-case |sum of k_max products| cannot overflow it."""
        product = self.operand_bits + self.w_bits - 1          # |a*w| < 2^(product)
        return product + max(0, ceil(log2(self.k_max))) + 1

    @property
    def threshold_bits(self) -> int:
        """Thresholds compare against the possibly negated accumulator, and +inf pads unused entries."""
        return self.acc_bits + 1

    @property
    def search_stages(self) -> int:
        return self.out_bits

    @property
    def lane_stages(self) -> int:
        """Pipeline stages of a requant lane: the threshold search or the fixed-point stages, whichever is
        longer (both paths take the same number of cycles, so the cycle model does not depend on the mode)."""
        return max(self.search_stages, self.fixed_steps)

    @property
    def lane_stage_cycles(self) -> int:
        """Cycles of one requant lane stage: its memory read, the memory's output register (inside an FPGA block
        RAM), a register beside the compare (the block RAMs stand apart from the logic), then the compare
        (requant.py)."""
        return LANE_STAGE_CYCLES

    @property
    def lane_latency(self) -> int:
        """Cycles from a value entering a requant lane to its result leaving it: ``lane_stage_cycles`` per stage,
        the count register and the output register (requant.py)."""
        return self.lane_stage_cycles * self.lane_stages + 2

    @property
    def feed_latency(self) -> int:
        """Cycles from the controller addressing the scratchpads to the operands entering the array: the address
        register, each bank's own address register beside its block RAMs (the register that the source multiplexer
        — compute, streamed output, host read — feeds, so that nothing but a route reaches a block RAM's address),
        the memory read, the memory's output register (inside an FPGA block RAM), a word register beside the logic
        (the block RAMs stand apart from it: ~4.5 ns of routing on ECP5), each row's word (the bank its input pixel
        is in, chosen from the R words) and the operand register (the lane chosen, − zx) (top.py). Every other
        controller output that meets the data (operand selects, valid/last, commits, weight shifts, the WS
        accumulator and lane addresses) is delayed to match. The WS controller registers its rows' reads once more
        (the slot sums and padding tests, before the banks pick their addresses: ws_controller.py)."""
        return 8 if self.dataflow == "ws" else 7

    @property
    def pe_stages(self) -> int:
        """Pipeline stages of a PE: the product register, then the accumulator (pe.py)."""
        return 2

    @property
    def fixed_bits(self) -> int:
        """Width of the values in the lanes' fixed-point stages (signed): an accumulator plus a bias and a
        rounding carry. The compiler refuses layers whose stage values do not fit."""
        return self.acc_bits + 2

    @property
    def act_addr_bits(self) -> int:
        return _bits_for(self.act_depth)

    @property
    def weight_addr_bits(self) -> int:
        return _bits_for(self.weight_depth)

    @property
    def out_addr_bits(self) -> int:
        return _bits_for(self.out_depth)


def _check_range(field: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{field} must be an integer in {lo}..{hi}, got {value!r}")
