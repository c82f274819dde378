"""The ECP5 register packing (:mod:`hwgen.estimate.ecp5_pack`) as a step on files, for both flows that run it:
``hwgen estimate --synth`` (:mod:`hwgen.estimate.synth`) and ``hwgen board`` (:mod:`hwgen.board.build`, whose
build script runs ``python -m hwgen.estimate.ecp5_pack_run`` between Yosys and nextpnr-ecp5).

Kept apart from the pass itself: ``ecp5_pack.py``'s text is part of the synthesis cache key (a change to the pass
changes every ECP5 figure), and nothing here changes a netlist.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .ecp5_pack import MULT, RAM, _find_top, _param, cell_counts, pack_ecp5

log = logging.getLogger(__name__)


def block_registers(netlist: dict) -> dict[str, dict[str, str]]:
    """The register modes of every DP16KD (``REGMODE_A/B``) and MULT18X18D (``REG_INPUTA/B_CLK``,
    ``REG_OUTPUT_CLK``) of the top module, by cell name: what a packed netlist hands to nextpnr."""
    module = netlist["modules"][_find_top(netlist)]
    params = {RAM: (("REGMODE_A", "NOREG"), ("REGMODE_B", "NOREG")),
              MULT: (("REG_INPUTA_CLK", "NONE"), ("REG_INPUTB_CLK", "NONE"), ("REG_OUTPUT_CLK", "NONE"))}
    return {name: {key: _param(cell, key, default) for key, default in params[cell["type"]]}
            for name, cell in sorted(module["cells"].items()) if cell["type"] in params}


def pack_file(netlist_path, packed_path, record_path) -> dict:
    """:func:`pack_ecp5` from file to file: Yosys' JSON at ``netlist_path`` packed into ``packed_path``, and at
    ``record_path`` (JSON) the :class:`PackReport` with the cells by type before and after and the blocks' register
    modes after (:func:`block_registers`), so a figure or a bitstream can be traced to what the pass did. Returns
    that record."""
    netlist = json.loads(Path(netlist_path).read_text())
    packed, report = pack_ecp5(netlist)
    Path(packed_path).write_text(json.dumps(packed))
    record = report.to_dict()
    record.update(cells_before=cell_counts(netlist), cells_after=cell_counts(packed),
                  block_registers=block_registers(packed))
    Path(record_path).write_text(json.dumps(record, indent=1) + "\n")
    log.info(
        "ecp5_pack: %d RAM ports, %d DSP inputs, %d DSP outputs absorbed; %d FFs removed, %d duplicated",
        report.ram_ports_absorbed, report.dsp_inputs_absorbed, report.dsp_outputs_absorbed, report.ffs_removed,
        report.ffs_duplicated)
    return record


def main(argv: list[str] | None = None) -> None:
    """``python -m hwgen.estimate.ecp5_pack_run NETLIST.json -o PACKED.json --record RECORD.json``: the pass as a build
    step (``hwgen board`` runs it between Yosys and nextpnr-ecp5)."""
    parser = argparse.ArgumentParser(prog="python -m hwgen.estimate.ecp5_pack_run",
                                     description="ECP5 register packing of a Yosys JSON netlist (ecp5_pack)")
    parser.add_argument("netlist", help="Yosys JSON netlist (synth_ecp5 output)")
    parser.add_argument("-o", "--output", required=True, help="the packed netlist (may be NETLIST itself)")
    parser.add_argument("--record", required=True, help="what the pass did (JSON)")
    args = parser.parse_args(argv)
    record = pack_file(args.netlist, args.output, args.record)
    print(f"ecp5_pack: {record['ram_ports_absorbed']} RAM ports, {record['dsp_inputs_absorbed']} DSP inputs, "
          f"{record['dsp_outputs_absorbed']} DSP outputs absorbed; {record['ffs_removed']} FFs removed, "
          f"{record['ffs_duplicated']} duplicated")


if __name__ == "__main__":
    main()
