// hwgen: the SRAM macro black box of the ASIC flow (flows/asic_sram_map.v.j2); its area, leakage and access energy
// come from hwgen.estimate.sram.
(* blackbox *)
module hwgen_sram #(parameter DEPTH = 4, parameter WIDTH = 8, parameter ABITS = 2, parameter RD_PORTS = 1,
                    parameter WR_PORTS = 1) (
  input [RD_PORTS-1:0] RD_CLK,
  input [RD_PORTS-1:0] RD_EN,
  input [RD_PORTS*ABITS-1:0] RD_ADDR,
  output [RD_PORTS*WIDTH-1:0] RD_DATA,
  input [WR_PORTS-1:0] WR_CLK,
  input [WR_PORTS*WIDTH-1:0] WR_EN,
  input [WR_PORTS*ABITS-1:0] WR_ADDR,
  input [WR_PORTS*WIDTH-1:0] WR_DATA
);
endmodule
