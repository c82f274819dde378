// Native Verilator harness for every hwgen hardware top (the host protocol; see hwgen/verilator.py).
//
//   harness --load FILE [--load FILE ...] --reads FILE --out FILE [--max-cycles N] [--wave FILE.fst|FILE.vcd]
//           [--x FILE] [--y-beats N [--stop-after-y]]
//
// 1. Reset (rst high for RESET_CYCLES clocks).
// 2. Every write of every load file, in order, through the `load` stream (honouring `load__ready`).
//    Load file: one write per line, `target bank addr lane value` in decimal; a negative value is stored as
//    its low DATA_BITS bits (two's complement).
// 3. A one-cycle `start` pulse (cycle 0), then clocks until `done` (at most --max-cycles clocks after the pulse).
//    Meanwhile the beats of the --x file go into `s_axis` (tvalid high while beats remain) and every `m_axis` beat
//    is collected (tready held high). X file: one beat per line, `<tdata in hex> <tlast 0|1>`. With
//    --stop-after-y the run ends once --y-beats beats came out instead of at `done` (for tops without one).
// 4. Every request of the reads file through `read`, answers collected from `rdata` (ready held high).
//    Reads file: one request per line, `target bank addr lane`.
// 5. Out file: `cycles <cycles port>`, `sim_cycles <clocks simulated>`, `run_seconds <wall time of start → done>`,
//    `answers <n>` and one answer per line as an unsigned decimal, `x_starts <n>` and the cycle of each sample's
//    first `s_axis` transfer, `y_beats <n>` and one `<tdata in hex> <tlast> <cycle>` line per `m_axis` transfer
//    (cycles counted from the start pulse).
//
// Exit status: 0 success; 2 bad command line or input file; 3 --max-cycles exceeded before `done`;
// 4 a stream made no progress for STALL_LIMIT clocks (the design never became ready or never answered).
//
// Build-time macros: TOP_CLASS (the Verilated class, default Vtop), TOP_HEADER (its header, default
// TOP_CLASS.h), the payload field widths below, and VM_TRACE / VM_TRACE_FST / VM_TRACE_SAIF (set by `verilator --trace-fst` / `--trace-saif`, or `--trace` for VCD).
// Port names follow Amaranth's flattening of the component signature: load__valid, load__ready,
// load__payload (the StructLayout packed, first field at bit 0), read__*, rdata__*, start, done, cycles,
// clk and rst, and the AXI-Stream data ports s_axis_t{data,valid,ready,last} and m_axis_t{...} (any width).

#include <cctype>
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
#include <type_traits>
#include <utility>
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
#elif VM_TRACE_SAIF
#include "verilated_saif_c.h"
typedef VerilatedSaifC HwgenTrace;
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

// A stream beat of any width as little-endian 32-bit words, to and from Verilator's port types (CData, SData,
// IData, QData or VlWide<N>).
using Beat = std::vector<uint32_t>;

template <typename Port>
void put_beat(Port& port, const Beat& beat) {
    if constexpr (std::is_integral_v<Port>) {
        uint64_t value = beat.empty() ? 0 : beat[0];
        if (beat.size() > 1) value |= static_cast<uint64_t>(beat[1]) << 32;
        port = static_cast<Port>(value);
    } else {
        for (size_t i = 0; i < Port::Words; ++i) port[i] = i < beat.size() ? beat[i] : 0;
    }
}

template <typename Port>
Beat get_beat(const Port& port) {
    if constexpr (std::is_integral_v<Port>) {
        const uint64_t value = port;
        return {static_cast<uint32_t>(value), static_cast<uint32_t>(value >> 32)};
    } else {
        const size_t words = Port::Words;
        Beat beat(words);
        for (size_t i = 0; i < words; ++i) beat[i] = port[i];
        return beat;
    }
}

std::string beat_hex(const Beat& beat) {
    std::string text;
    char word[9];
    for (size_t i = beat.size(); i-- > 0;) {
        std::snprintf(word, sizeof word, text.empty() ? "%x" : "%08x", beat[i]);
        if (!text.empty() || beat[i] || i == 0) text += word;
    }
    return text;
}

struct Beats {
    std::vector<Beat> data;
    std::vector<uint8_t> last;
};

// Reads an x file: `<hex> <0|1>` per line.
void read_beats(const char* path, Beats& beats) {
    FILE* file = std::fopen(path, "r");
    if (!file) fail(2, "cannot open %s: %s", path, std::strerror(errno));
    char* line = nullptr;
    size_t capacity = 0;
    for (unsigned long number = 1; getline(&line, &capacity, file) != -1; ++number) {
        char* cursor = line;
        while (*cursor == ' ' || *cursor == '\t') ++cursor;
        if (*cursor == '\n' || *cursor == '\r' || *cursor == '\0') continue;
        char* end = cursor;
        while (std::isxdigit(static_cast<unsigned char>(*end))) ++end;
        if (end == cursor) fail(2, "%s:%lu: expected `<hex tdata> <tlast>`", path, number);
        Beat beat;
        for (const char* digit = end; digit > cursor;) {  // 8 hex digits a word, least significant first
            const char* from = digit - cursor > 8 ? digit - 8 : cursor;
            beat.push_back(static_cast<uint32_t>(std::stoul(std::string(from, digit), nullptr, 16)));
            digit = from;
        }
        char* after;
        const long last = std::strtol(end, &after, 10);
        if (after == end || (last != 0 && last != 1)) fail(2, "%s:%lu: tlast must be 0 or 1", path, number);
        beats.data.push_back(std::move(beat));
        beats.last.push_back(static_cast<uint8_t>(last));
    }
    std::free(line);
    if (std::ferror(file)) fail(2, "cannot read %s", path);
    std::fclose(file);
}

struct Options {
    std::vector<const char*> loads;
    const char* reads = nullptr;
    const char* out = nullptr;
    const char* wave = nullptr;
    const char* x = nullptr;
    uint64_t max_cycles = UINT64_MAX;
    uint64_t y_beats = 0;
    bool stop_after_y = false;
};

uint64_t parse_count(const char* flag, const char* value) {
    char* end;
    errno = 0;
    const uint64_t count = std::strtoull(value, &end, 10);
    if (*end || end == value || errno) fail(2, "%s needs a non-negative integer, got '%s'", flag, value);
    return count;
}

Options parse_options(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const char* flag = argv[i];
        if (!std::strcmp(flag, "--stop-after-y")) {
            options.stop_after_y = true;
            continue;
        }
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
            options.max_cycles = parse_count(flag, value);
        } else if (!std::strcmp(flag, "--x")) {
            options.x = value;
        } else if (!std::strcmp(flag, "--y-beats")) {
            options.y_beats = parse_count(flag, value);
        } else {
            fail(2, "unknown option %s (usage: --load FILE ... --reads FILE --out FILE [--max-cycles N] "
                    "[--wave FILE.fst|FILE.vcd] [--x FILE] [--y-beats N [--stop-after-y]])", flag);
        }
    }
    if (!options.reads || !options.out) fail(2, "--reads and --out are required");
    if (options.stop_after_y && !options.y_beats) fail(2, "--stop-after-y needs --y-beats N (N > 0)");
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
    top.s_axis_tvalid = 0;
    top.m_axis_tready = 0;
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

struct Streams {
    Beats y;
    std::vector<uint64_t> y_cycles;
    std::vector<uint64_t> x_starts;
};

// The start pulse (cycle 0), then clocks with the streams running until `done` (or the last expected y beat).
void run(Simulation& sim, const Options& options, const Beats& x, Streams& streams) {
    TOP_CLASS& top = sim.top();
    top.start = 1;
    sim.step();
    top.start = 0;
    top.m_axis_tready = 1;
    size_t next_x = 0;
    for (uint64_t cycle = 1;; ++cycle) {
        const bool offer = next_x < x.data.size();
        top.s_axis_tvalid = offer;
        if (offer) {
            put_beat(top.s_axis_tdata, x.data[next_x]);
            top.s_axis_tlast = x.last[next_x];
        }
        sim.sample();
        if (options.stop_after_y ? streams.y.data.size() >= options.y_beats : static_cast<bool>(top.done)) break;
        if (cycle > options.max_cycles)
            fail(3, "--max-cycles %" PRIu64 " exceeded: %s %" PRIu64 " clocks after the start pulse",
                 options.max_cycles, options.stop_after_y ? "output beats still missing" : "done still low",
                 cycle - 1);
        if (offer && top.s_axis_tready) {
            if (next_x == 0 || x.last[next_x - 1]) streams.x_starts.push_back(cycle);
            ++next_x;
        }
        if (top.m_axis_tvalid) {
            streams.y.data.push_back(get_beat(top.m_axis_tdata));
            streams.y.last.push_back(top.m_axis_tlast);
            streams.y_cycles.push_back(cycle);
        }
        sim.edge();
    }
    top.s_axis_tvalid = 0;
    if (next_x < x.data.size())
        fail(4, "s_axis stalled: the run ended with %zu of %zu input beats taken", next_x, x.data.size());
    if (options.y_beats && streams.y.data.size() != options.y_beats)
        fail(4, "m_axis gave %zu beats, expected %" PRIu64, streams.y.data.size(), options.y_beats);
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
    Beats x;
    if (options.x) read_beats(options.x, x);
    Streams streams;

    std::vector<uint32_t> answers;
    uint64_t cycles;
    uint64_t clocks;
    double run_seconds;
    {
        Simulation sim(options.wave);
        reset(sim);
        load(sim, writes);
        const auto started = std::chrono::steady_clock::now();
        run(sim, options, x, streams);
        run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        cycles = sim.top().cycles;
        read(sim, requests, answers);
        clocks = sim.clocks();
    }

    FILE* out = std::fopen(options.out, "w");
    if (!out) fail(2, "cannot write %s: %s", options.out, std::strerror(errno));
    std::fprintf(out, "cycles %" PRIu64 "\nsim_cycles %" PRIu64 "\nrun_seconds %.9f\n", cycles, clocks, run_seconds);
    std::fprintf(out, "answers %zu\n", answers.size());
    for (const uint32_t answer : answers) std::fprintf(out, "%" PRIu32 "\n", answer);
    std::fprintf(out, "x_starts %zu\n", streams.x_starts.size());
    for (const uint64_t cycle : streams.x_starts) std::fprintf(out, "%" PRIu64 "\n", cycle);
    std::fprintf(out, "y_beats %zu\n", streams.y.data.size());
    for (size_t i = 0; i < streams.y.data.size(); ++i)
        std::fprintf(out, "%s %d %" PRIu64 "\n", beat_hex(streams.y.data[i]).c_str(), streams.y.last[i],
                     streams.y_cycles[i]);
    if (std::fclose(out)) fail(2, "cannot write %s: %s", options.out, std::strerror(errno));
    return 0;
} catch (const Failure& failure) {
    std::fprintf(stderr, "harness: %s\n", failure.message.c_str());
    return failure.status;
}
