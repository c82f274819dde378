// Clock loop of the hand-written array bound (benchmarks/sim_speed.py): random operands every cycle, `last` every
// K cycles, then R `shift` cycles — the same per-cycle work pattern as hwgen's harness (two evals per clock).
//   hand_array CYCLES K        prints "<cycles> <seconds>"
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "verilated.h"
#define HWGEN_STRINGIFY_(x) #x
#define HWGEN_STRINGIFY(x) HWGEN_STRINGIFY_(x)
#include HWGEN_STRINGIFY(TOP_CLASS.h)

static uint64_t state = 1;
static uint64_t random64() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state ^ (state >> 29);
}

// Random bits into a port of `width` bits (upper bits of the top word kept clear, as Verilator expects).
template <typename T>
static void drive(T& port, int width) {
    if constexpr (std::is_integral_v<T>) {
        port = static_cast<T>(width >= 64 ? random64() : random64() & ((uint64_t{1} << width) - 1));
    } else {
        const int words = (width + 31) / 32;
        for (int i = 0; i < words; ++i) port[i] = static_cast<uint32_t>(random64());
        if (width % 32) port[words - 1] &= (uint32_t{1} << (width % 32)) - 1;
    }
}

template <typename T>
static uint64_t low_bits(const T& port) {
    if constexpr (std::is_integral_v<T>) return port;
    else return port[0];
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    const uint64_t cycles = std::strtoull(argv[1], nullptr, 10), k = std::strtoull(argv[2], nullptr, 10);
    VerilatedContext context;
    TOP_CLASS top{&context};
    top.rst = 1;
    for (int i = 0; i < 4; ++i) {
        top.clk = 0; top.eval(); top.clk = 1; top.eval();
    }
    top.rst = 0;
    uint64_t checksum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t cycle = 0; cycle < cycles; ++cycle) {
        const uint64_t phase = cycle % (k + ROWS);
        drive(top.a, ROWS * A_BITS);
        drive(top.w, COLS * W_BITS);
        top.valid = phase < k;
        top.last = phase == k - 1;
        top.shift = phase >= k;
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
        checksum += low_bits(top.drain);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%llu %.6f %llu\n", static_cast<unsigned long long>(cycles), seconds,
                static_cast<unsigned long long>(checksum));
    return 0;
}
