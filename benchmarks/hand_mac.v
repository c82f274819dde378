// Hand-written references for benchmarks/hardware_quality.py, plain Verilog, synthesized exactly like hwgen's PE.

// The smallest int8 MAC: acc += a * w on valid, cleared by clear. ACC bits as hwgen's PE (int8 codes, k_max 1024).
module hand_mac_minimal #(parameter ACC = 28) (
    input  wire                  clk,
    input  wire                  valid,
    input  wire                  clear,
    input  wire signed [7:0]     a,
    input  wire signed [7:0]     w,
    output reg  signed [ACC-1:0] acc
);
    always @(posedge clk)
        if (clear) acc <= 0;
        else if (valid) acc <= acc + a * w;
endmodule

// The same job as hwgen's output-stationary PE, written by hand: operand (code − zero point, 10 bits) and weight
// forwarded to the neighbours, valid/last forwarded, the product a·w registered (FF → DSP → FF), then on the next
// cycle (with the forwarded valid/last) acc += product, the finished sum captured into a shadow register on `last`
// (acc restarts at 0), and the shadow registers shifting down the column on `shift`.
module hand_pe_os #(parameter A = 10, parameter W = 8, parameter ACC = 28) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire signed [A-1:0]   a_in,
    input  wire signed [W-1:0]   w_in,
    input  wire                  valid,
    input  wire                  last,
    input  wire                  shift,
    input  wire signed [ACC-1:0] shadow_in,
    output reg  signed [A-1:0]   a_out,
    output reg  signed [W-1:0]   w_out,
    output reg                   valid_out,
    output reg                   last_out,
    output reg  signed [ACC-1:0] shadow_out
);
    reg  signed [ACC-1:0]   acc;
    reg  signed [A+W-1:0]   product;
    wire signed [ACC-1:0]   total = acc + product;
    always @(posedge clk) begin
        a_out <= a_in;
        w_out <= w_in;
        product <= a_in * w_in;
        if (rst) begin
            valid_out <= 0; last_out <= 0; acc <= 0;
        end else begin
            valid_out <= valid;
            last_out <= last & valid;
            if (valid_out) acc <= last_out ? 0 : total;
        end
        if (shift) shadow_out <= shadow_in;
        else if (last_out) shadow_out <= total;
    end
endmodule
