"""FPGA boards: bitstreams with the open toolchain (``hwgen board``) around a UART host bridge, and the host side
that runs a design on the board (``hwgen run-board``).

- :mod:`~hwgen.board.uart` — UART receiver and transmitter (Amaranth);
- :mod:`~hwgen.board.bridge` — the bridge: command FIFO, executor, transmitter, the accelerator as a black box;
- :mod:`~hwgen.board.protocol` — the byte protocol, shared by the hardware and the host (:class:`BridgeClient`);
- :mod:`~hwgen.board.build` — board lookup (amaranth-boards), fit check, YoWASP build, cache, report;
- :mod:`~hwgen.board.sim` — the bridge in simulation (cocotb, a UART model, the same host code).
"""
