// Native Verilator harness for every hwgen hardware top (the host protocol; see hwgen/verilator.py).
//
//   harness --load FILE [--load FILE ...] --reads FILE --out FILE [--max-cycles N] [--wave FILE.fst|FILE.vcd]
//
// 1. Reset (rst high for RESET_CYCLES clocks).
// 2. Every write of every load file, in order, through the `load` stream (honouring `load__ready`).
//    Load file: one write per line, `target bank addr lane value` in decimal; a negative value is stored as
//    its low DATA_BITS bits (two's complement).
// 3. A one-cycle `start` pulse, then clocks until `done` (at most --max-cycles clocks after the pulse).
// 4. Every request of the reads file through `read`, answers collected from `rdata` (ready held high).
//    Reads file: one request per line, `target bank addr lane`.
// 5. Out file: `cycles <cycles port>`, `sim_cycles <clocks simulated>`, `run_seconds <wall time of start → done>`,
//    then one answer per line as an
//    unsigned decimal.
//
// Exit status: 0 success; 2 bad command line or input file; 3 --max-cycles exceeded before `done`;
// 4 a stream made no progress for STALL_LIMIT clocks (the design never became ready or never answered).
//
// Build-time macros: TOP_CLASS (the Verilated class, default Vtop), TOP_HEADER (its header, default
// TOP_CLASS.h), the payload field widths below, and VM_TRACE / VM_TRACE_FST (set by `verilator --trace-fst`, or `--trace` for VCD).
// Port names follow Amaranth's flattening of the component signature: load__valid, load__ready,
// load__payload (the StructLayout packed, first field at bit 0), read__*, rdata__*, start, done, cycles,
// clk and rst.

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "verilated.h"

#ifndef TOP_CLASS
#define TOP_CLASS Vtop
#endif
#define HWGEN_STRINGIFY_(x) #x
#define HWGEN_STRINGIFY(x) HWGEN_STRINGIFY_(x)
#ifndef TOP_HEADER
#define TOP_HEADER TOP_CLASS.h
#endif
#include HWGEN_STRINGIFY(TOP_HEADER)

#if VM_TRACE_FST
#include "verilated_fst_c.h"
typedef VerilatedFstC HwgenTrace;
#elif VM_TRACE
#include "verilated_vcd_c.h"
typedef VerilatedVcdC HwgenTrace;
#endif

// The C++ member of Verilog port `<stream>__<field>`: Verilator escapes the C++-reserved "__" as "___05F".
#define HWGEN_PORT(stream, field) stream##___05F##field

#ifndef TARGET_BITS
#define TARGET_BITS 3
#endif
#ifndef BANK_BITS
#define BANK_BITS 6
#endif
#ifndef ADDR_BITS
#define ADDR_BITS 16
#endif
#ifndef LANE_BITS
#define LANE_BITS 6
#endif
#ifndef DATA_BITS
#define DATA_BITS 32
#endif

static_assert(TARGET_BITS + BANK_BITS + ADDR_BITS + LANE_BITS + DATA_BITS <= 64,
              "the load payload must fit in 64 bits");
static_assert(DATA_BITS <= 32, "rdata is read as a 32-bit port");

namespace {

constexpr int kResetCycles = 4;
constexpr uint64_t kStallLimit = 1000000;  // clocks without a transfer before a stream is declared stuck
constexpr int kFields = 5;                 // target, bank, addr, lane, data
constexpr int kWidths[kFields] = {TARGET_BITS, BANK_BITS, ADDR_BITS, LANE_BITS, DATA_BITS};
constexpr const char* kNames[kFields] = {"target", "bank", "addr", "lane", "value"};

// A failure: main prints the message and exits with the status, after the simulation (and its wave file)
// has been closed, so a wave of a failed run is complete up to the failure.
struct Failure {
    int status;
    std::string message;
};

[[noreturn]] void fail(int status, const char* format, ...) {
    char message[1024];
    va_list args;
    va_start(args, format);
    std::vsnprintf(message, sizeof message, format, args);
    va_end(args);
    throw Failure{status, message};
}

// Reads a file of lines with `fields` decimal integers each and packs every line into a payload word, the
// first field at bit 0. The last field of a load line (the value) may be negative and keeps its low bits.
void read_payloads(const char* path, int fields, std::vector<uint64_t>& payloads) {
    FILE* file = std::fopen(path, "r");
    if (!file) fail(2, "cannot open %s: %s", path, std::strerror(errno));
    char line[512];
    for (unsigned long number = 1; std::fgets(line, sizeof line, file); ++number) {
        char* cursor = line;
        while (*cursor == ' ' || *cursor == '\t') ++cursor;
        if (*cursor == '\n' || *cursor == '\r' || *cursor == '\0') continue;  // blank line
        uint64_t payload = 0;
        int shift = 0;
        for (int field = 0; field < fields; ++field) {
            char* end;
            errno = 0;
            const long long value = std::strtoll(cursor, &end, 10);
            if (end == cursor || errno)
                fail(2, "%s:%lu: expected %d integers per line (%s)", path, number, fields,
                     fields == kFields ? "target bank addr lane value" : "target bank addr lane");
            const int width = kWidths[field];
            const uint64_t mask = (uint64_t{1} << width) - 1;
            const bool is_value = field == kFields - 1;
            const bool fits = is_value ? value >= -(1LL << (width - 1)) && value <= static_cast<long long>(mask)
                                       : value >= 0 && value <= static_cast<long long>(mask);
            if (!fits) fail(2, "%s:%lu: %s %lld does not fit in %d bits", path, number, kNames[field], value, width);
            payload |= (static_cast<uint64_t>(value) & mask) << shift;
            shift += width;
            cursor = end;
        }
        while (*cursor == ' ' || *cursor == '\t' || *cursor == '\r') ++cursor;
        if (*cursor != '\n' && *cursor != '\0')
            fail(2, "%s:%lu: expected %d integers per line, found more", path, number, fields);
        payloads.push_back(payload);
    }
    if (std::ferror(file)) fail(2, "cannot read %s", path);
    std::fclose(file);
}

struct Options {
    std::vector<const char*> loads;
    const char* reads = nullptr;
    const char* out = nullptr;
    const char* wave = nullptr;
    uint64_t max_cycles = UINT64_MAX;
};

Options parse_options(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const char* flag = argv[i];
        if (i + 1 >= argc) fail(2, "%s needs a value", flag);
        const char* value = argv[++i];
        if (!std::strcmp(flag, "--load")) {
            options.loads.push_back(value);
        } else if (!std::strcmp(flag, "--reads")) {
            options.reads = value;
        } else if (!std::strcmp(flag, "--out")) {
            options.out = value;
        } else if (!std::strcmp(flag, "--wave")) {
            options.wave = value;
        } else if (!std::strcmp(flag, "--max-cycles")) {
            char* end;
            errno = 0;
            options.max_cycles = std::strtoull(value, &end, 10);
            if (*end || end == value || errno) fail(2, "--max-cycles needs a non-negative integer, got '%s'", value);
        } else {
            fail(2, "unknown option %s (usage: --load FILE ... --reads FILE --out FILE [--max-cycles N] "
                    "[--wave FILE.fst|FILE.vcd])", flag);
        }
    }
    if (!options.reads || !options.out) fail(2, "--reads and --out are required");
#if !VM_TRACE
    if (options.wave) fail(2, "--wave needs a harness built with tracing (hwgen.verilator.build(trace=True))");
#endif
    return options;
}

// One design under simulation. Each `step` is one clock: inputs set by the caller settle with clk low
// (`sample`), outputs are read, then the rising edge commits the cycle (`edge`).
class Simulation {
  public:
    explicit Simulation(const char* wave) {
#if VM_TRACE
        if (wave) context_.traceEverOn(true);
#endif
        top_.reset(new TOP_CLASS{&context_});
#if VM_TRACE
        if (wave) {
            trace_.reset(new HwgenTrace);
            top_->trace(trace_.get(), 99);
            trace_->open(wave);
        }
#else
        (void)wave;
#endif
    }

    ~Simulation() {
#if VM_TRACE
        if (trace_) trace_->close();
#endif
        top_->final();
    }

    TOP_CLASS& top() { return *top_; }
    uint64_t clocks() const { return clocks_; }

    // Settles the inputs with the clock low; outputs are valid afterwards.
    void sample() {
        top_->clk = 0;
        top_->eval();
        dump();
    }

    // Rising edge: the cycle's transfers happen.
    void edge() {
        top_->clk = 1;
        top_->eval();
        dump();
        ++clocks_;
    }

    void step() {
        sample();
        edge();
    }

  private:
    void dump() {
        context_.timeInc(1);
#if VM_TRACE
        if (trace_) trace_->dump(context_.time());
#endif
    }

    VerilatedContext context_;
    std::unique_ptr<TOP_CLASS> top_;
#if VM_TRACE
    std::unique_ptr<HwgenTrace> trace_;
#endif
    uint64_t clocks_ = 0;
};

void reset(Simulation& sim) {
    TOP_CLASS& top = sim.top();
    top.rst = 1;
    top.start = 0;
    top.HWGEN_PORT(load, valid) = 0;
    top.HWGEN_PORT(read, valid) = 0;
    top.HWGEN_PORT(rdata, ready) = 1;
    for (int i = 0; i < kResetCycles; ++i) sim.step();
    top.rst = 0;
}

void load(Simulation& sim, const std::vector<uint64_t>& writes) {
    TOP_CLASS& top = sim.top();
    size_t next = 0;
    uint64_t idle = 0;
    while (next < writes.size()) {
        top.HWGEN_PORT(load, valid) = 1;
        top.HWGEN_PORT(load, payload) = writes[next];
        sim.sample();
        const bool transfer = top.HWGEN_PORT(load, ready);
        sim.edge();
        if (transfer) {
            ++next;
            idle = 0;
        } else if (++idle >= kStallLimit) {
            fail(4, "load stream stalled: load__ready low for %" PRIu64 " clocks at write %zu of %zu", idle,
                 next + 1, writes.size());
        }
    }
    top.HWGEN_PORT(load, valid) = 0;
}

void run(Simulation& sim, uint64_t max_cycles) {
    TOP_CLASS& top = sim.top();
    top.start = 1;
    sim.step();
    top.start = 0;
    for (uint64_t waited = 0;; ++waited) {
        sim.sample();
        if (top.done) break;
        if (waited >= max_cycles)
            fail(3, "--max-cycles %" PRIu64 " exceeded: done still low %" PRIu64 " clocks after the start pulse",
                 max_cycles, waited);
        sim.edge();
    }
}

void read(Simulation& sim, const std::vector<uint64_t>& requests, std::vector<uint32_t>& answers) {
    TOP_CLASS& top = sim.top();
    answers.reserve(requests.size());
    size_t next = 0;
    uint64_t idle = 0;
    top.HWGEN_PORT(rdata, ready) = 1;
    while (answers.size() < requests.size()) {
        top.HWGEN_PORT(read, valid) = next < requests.size();
        if (next < requests.size()) top.HWGEN_PORT(read, payload) = requests[next];
        sim.sample();
        const bool request_transfer = top.HWGEN_PORT(read, valid) && top.HWGEN_PORT(read, ready);
        const bool answer_transfer = top.HWGEN_PORT(rdata, valid);
        if (answer_transfer) answers.push_back(static_cast<uint32_t>(top.HWGEN_PORT(rdata, payload)));
        sim.edge();
        if (request_transfer) ++next;
        if (request_transfer || answer_transfer) {
            idle = 0;
        } else if (++idle >= kStallLimit) {
            fail(4, "read stream stalled: no transfer for %" PRIu64 " clocks with %zu of %zu requests sent and "
                    "%zu answered", idle, next, requests.size(), answers.size());
        }
    }
    top.HWGEN_PORT(read, valid) = 0;
}

}  // namespace

int main(int argc, char** argv) try {
    const Options options = parse_options(argc, argv);
    std::vector<uint64_t> writes;
    for (const char* path : options.loads) read_payloads(path, kFields, writes);
    std::vector<uint64_t> requests;
    read_payloads(options.reads, kFields - 1, requests);

    std::vector<uint32_t> answers;
    uint64_t cycles;
    uint64_t clocks;
    double run_seconds;
    {
        Simulation sim(options.wave);
        reset(sim);
        load(sim, writes);
        const auto started = std::chrono::steady_clock::now();
        run(sim, options.max_cycles);
        run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        cycles = sim.top().cycles;
        read(sim, requests, answers);
        clocks = sim.clocks();
    }

    FILE* out = std::fopen(options.out, "w");
    if (!out) fail(2, "cannot write %s: %s", options.out, std::strerror(errno));
    std::fprintf(out, "cycles %" PRIu64 "\nsim_cycles %" PRIu64 "\nrun_seconds %.9f\n", cycles, clocks, run_seconds);
    for (const uint32_t answer : answers) std::fprintf(out, "%" PRIu32 "\n", answer);
    if (std::fclose(out)) fail(2, "cannot write %s: %s", options.out, std::strerror(errno));
    return 0;
} catch (const Failure& failure) {
    std::fprintf(stderr, "harness: %s\n", failure.message.c_str());
    return failure.status;
}
