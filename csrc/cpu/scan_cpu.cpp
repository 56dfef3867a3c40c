// The CPU kernels' entry points (scan_cpu.h) forward to the variant in use; this file picks it (see
// scan_cpu_isa.h).  Compiled with the common flags, like the binding: no ISA-specific code runs before
// the CPU has been asked what it supports.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "cpu/scan_cpu.h"
#include "cpu/scan_cpu_isa.h"

#define GRAINSEG_CAT_(a, b) a##b
#define GRAINSEG_CAT(a, b) GRAINSEG_CAT_(a, b)

// The compiled variants, best first.
#ifdef GRAINSEG_ISA  // a single -march build (GRAINSEG_MARCH): one variant, "native"
extern "C" const grainseg::cpu::ScanKernels* GRAINSEG_CAT(grainseg_scan_kernels_, GRAINSEG_ISA)();
#define GRAINSEG_VARIANTS {GRAINSEG_CAT(grainseg_scan_kernels_, GRAINSEG_ISA)}
#else
extern "C" const grainseg::cpu::ScanKernels* grainseg_scan_kernels_avx512();
extern "C" const grainseg::cpu::ScanKernels* grainseg_scan_kernels_avx2();
extern "C" const grainseg::cpu::ScanKernels* grainseg_scan_kernels_baseline();
#define GRAINSEG_VARIANTS {&grainseg_scan_kernels_avx512, &grainseg_scan_kernels_avx2, &grainseg_scan_kernels_baseline}
#endif

namespace grainseg {
namespace cpu {
namespace {

using TableFn = const ScanKernels* (*)();
const std::vector<TableFn>& variants() {
  static const std::vector<TableFn> v = GRAINSEG_VARIANTS;
  return v;
}

#if defined(__x86_64__) || defined(__i386__)
// XCR0: the register state the OS saves on context switches (AVX needs YMM, AVX-512 also opmask / ZMM).
unsigned long long os_saved_state() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}
#endif

// Whether this CPU (and OS) runs a variant; empty when it does, else what is missing.
std::string missing_features(const std::string& name) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const unsigned long long xcr0 = os_saved_state();
  std::string missing;
  const auto need = [&](bool ok, const char* what) {
    if (!ok) missing += (missing.empty() ? "" : ", ") + std::string(what);
  };
  // The variants are built with -march=x86-64-v3 / -v4 (setup.py): GCC >= 12 checks those levels whole
  // (also LZCNT, MOVBE, ...); the features named are what the error message lists.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  const bool v3 = __builtin_cpu_supports("x86-64-v3"), v4 = __builtin_cpu_supports("x86-64-v4");
#else
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  if (name == "avx512" || name == "avx2") {
    need(v3, "x86-64-v3 (AVX2, FMA, F16C, BMI2, ...)");
    need((xcr0 & 0x6) == 0x6, "OS support for AVX state");
  }
  if (name == "avx512") {
    need(v4, "x86-64-v4 (AVX-512 F/BW/VL/DQ/CD)");
    need((xcr0 & 0xe6) == 0xe6, "OS support for AVX-512 state");
  }
  return missing;
#else
  (void)name;
  return {};
#endif
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The table of a variant by name; throws when unknown or not runnable here.
const ScanKernels* find_variant(const std::string& name, const char* source) {
  for (TableFn f : variants()) {
    const ScanKernels* t = f();
    if (name != t->name) continue;
    const std::string missing = missing_features(name);
    if (!missing.empty())
      throw std::runtime_error(std::string(source) + ": the CPU kernel variant '" + name +
                               "' needs " + missing + ", which this CPU lacks; it supports: " +
                               join(supported_cpu_capabilities()));
    return t;
  }
  throw std::invalid_argument(std::string(source) + ": unknown CPU kernel variant '" + name +
                              "'; this build has: " + join(compiled_cpu_capabilities()));
}

std::atomic<const ScanKernels*> g_active{nullptr};
std::mutex g_init;

}  // namespace

std::vector<std::string> compiled_cpu_capabilities() {
  std::vector<std::string> out;
  for (TableFn f : variants()) out.emplace_back(f()->name);
  return out;
}

std::vector<std::string> supported_cpu_capabilities() {
  std::vector<std::string> out;
  for (TableFn f : variants())
    if (missing_features(f()->name).empty()) out.emplace_back(f()->name);
  return out;
}

const ScanKernels& active_kernels() {
  if (const ScanKernels* t = g_active.load(std::memory_order_acquire)) return *t;
  std::lock_guard<std::mutex> lock(g_init);
  if (const ScanKernels* t = g_active.load(std::memory_order_acquire)) return *t;
  const char* env = std::getenv("GRAINSEG_CPU_CAPABILITY");
  const ScanKernels* t = nullptr;
  if (env && *env && std::string(env) != "auto") {
    t = find_variant(env, "GRAINSEG_CPU_CAPABILITY");
  } else {
    for (TableFn f : variants())
      if (missing_features(f()->name).empty()) { t = f(); break; }
    if (!t) throw std::runtime_error("grainseg._C: this CPU runs none of the compiled kernel variants (" +
                                     join(compiled_cpu_capabilities()) + ")");
  }
  g_active.store(t, std::memory_order_release);
  return *t;
}

std::string cpu_capability() { return active_kernels().name; }

void set_cpu_capability(const std::string& name) {
  const ScanKernels* t = find_variant(name, "set_cpu_capability");
  std::lock_guard<std::mutex> lock(g_init);
  g_active.store(t, std::memory_order_release);
}

namespace {
template <typename T> constexpr int kDtype = -1;
template <> constexpr int kDtype<float> = 0;
template <> constexpr int kDtype<double> = 1;
template <> constexpr int kDtype<c10::Half> = 2;
template <> constexpr int kDtype<c10::BFloat16> = 3;
}  // namespace

template <typename in_t, typename acc_t>
void scan_fwd_cpu(const ScanParams& params) {
  active_kernels().fwd[kDtype<in_t>](params);
}

template <typename in_t, typename acc_t>
void scan_bwd_cpu(const ScanBwdParams& params) {
  active_kernels().bwd[kDtype<in_t>](params);
}

#define GRAINSEG_INSTANTIATE(in_t, acc_t)                              \
  template void scan_fwd_cpu<in_t, acc_t>(const ScanParams&);         \
  template void scan_bwd_cpu<in_t, acc_t>(const ScanBwdParams&);

GRAINSEG_INSTANTIATE(float, float)
GRAINSEG_INSTANTIATE(double, double)
GRAINSEG_INSTANTIATE(c10::Half, float)
GRAINSEG_INSTANTIATE(c10::BFloat16, float)

#undef GRAINSEG_INSTANTIATE

}  // namespace cpu
}  // namespace grainseg
