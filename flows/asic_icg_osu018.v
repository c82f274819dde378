// hwgen: the integrated clock gate of OSU 0.18 µm, which has no ICG cell: built, as an ICG cell is inside, from a
// latch transparent while the clock is low (LATCH is transparent while its CLK is high, so it takes the inverted
// clock) and an AND of the clock with the latched enable:
//
//            E ──▶ LATCH.D        Q ──┐
//   CLK ─┬─▶ INVX1 ──▶ LATCH.CLK      ├─▶ AND2X1 ──▶ GCLK
//        └────────────────────────────┘
//
// The enable may change at any time while CLK is high (the latch is closed), so GCLK never glitches; it is
// sampled at CLK's falling edge and GCLK pulses high for that clock's high phase only if it was high.
// Yosys `clockgate -pos $__hwgen_icg E:CLK:GCLK` places one per enable group (flows/synth_asic.ys.j2); this techmap
// turns each into the three cells. Area: INVX1 16 + LATCH 56 (LEF; the Liberty says 0, see
// hwgen.estimate.pdk.osu018_patched_text) + AND2X1 32 = 104 µm². The instance names (icg_latch ...) mark the
// cells as clock-gate parts in the netlist.
(* techmap_celltype = "$__hwgen_icg" *)
module _hwgen_icg_osu018 (E, CLK, GCLK);
  input E, CLK;
  output GCLK;
  wire clk_n, enable;
  INVX1 icg_inv (.A(CLK), .Y(clk_n));
  LATCH icg_latch (.CLK(clk_n), .D(E), .Q(enable));
  AND2X1 icg_and (.A(enable), .B(CLK), .Y(GCLK));
endmodule
