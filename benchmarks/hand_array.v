// The simulation-speed bound of benchmarks/sim_speed.py: an R×C output-stationary grid of hand_pe_os
// (benchmarks/hand_mac.v, the PE's whole job written by hand) with nothing around it: no scratchpads, controller,
// requantizer or streams. Operand a[i] enters row i, weight w[j] column j (the caller skews them), valid/last travel
// along the rows, the finished sums drain up the columns on `shift`.
module hand_array_os #(parameter R = 16, parameter C = 16, parameter A = 10, parameter W = 8, parameter ACC = 28) (
    input  wire             clk,
    input  wire             rst,
    input  wire [R*A-1:0]   a,
    input  wire [C*W-1:0]   w,
    input  wire             valid,
    input  wire             last,
    input  wire             shift,
    output wire [C*ACC-1:0] drain
);
    wire [A-1:0]   a_bus     [0:R-1][0:C];
    wire           valid_bus [0:R-1][0:C];
    wire           last_bus  [0:R-1][0:C];
    wire [W-1:0]   w_bus     [0:R][0:C-1];
    wire [ACC-1:0] shadow    [0:R][0:C-1];
    genvar i, j;
    generate
        for (i = 0; i < R; i = i + 1) begin : row
            assign a_bus[i][0] = a[i*A +: A];
            assign valid_bus[i][0] = valid;
            assign last_bus[i][0] = last;
        end
        for (j = 0; j < C; j = j + 1) begin : column
            assign w_bus[0][j] = w[j*W +: W];
            assign shadow[R][j] = 0;
            assign drain[j*ACC +: ACC] = shadow[0][j];
        end
        for (i = 0; i < R; i = i + 1) begin : pe_row
            for (j = 0; j < C; j = j + 1) begin : pe
                hand_pe_os #(.A(A), .W(W), .ACC(ACC)) pe (
                    .clk(clk), .rst(rst), .a_in(a_bus[i][j]), .w_in(w_bus[i][j]), .valid(valid_bus[i][j]),
                    .last(last_bus[i][j]), .shift(shift), .shadow_in(shadow[i + 1][j]), .a_out(a_bus[i][j + 1]),
                    .w_out(w_bus[i + 1][j]), .valid_out(valid_bus[i][j + 1]), .last_out(last_bus[i][j + 1]),
                    .shadow_out(shadow[i][j]));
            end
        end
    endgenerate
endmodule
