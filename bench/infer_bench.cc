// Inference throughput of iotinfer's classifier on the Fashion-MNIST test images, one JSON
// line per batch size. Driven by bench/infer.py (`./dev bench infer`).
#include <immintrin.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <opencv2/core/version.hpp>
#include <string>
#include <thread>
#include <vector>

#include "dataset/dataset.h"
#include "model/classifier.h"

namespace {

// FP32 fused multiply-adds per second one core sustains: 12 independent FMA chains hide the
// 4-cycle latency on two FMA pipes. Measured rather than computed from a nominal clock, which
// under turbo or a hypervisor says little. One loop per vector width, each compiled for its
// own instructions only, so that the AVX2 one runs on CPUs without AVX-512.
#define IOTINFER_FMA_CHAINS(Vector, lanes, set1, fmadd, first)                                 \
  Vector acc[12];                                                                              \
  for (int i = 0; i < 12; ++i) acc[i] = set1(static_cast<float>(i));                           \
  const Vector a = set1(0.999999f), b = set1(1e-7f);                                           \
  constexpr long kInner = 1 << 20;                                                             \
  long rounds = 0;                                                                             \
  const auto start = std::chrono::steady_clock::now();                                         \
  double elapsed = 0;                                                                          \
  do {                                                                                         \
    for (long i = 0; i < kInner; ++i) {                                                        \
      for (auto& x : acc) x = fmadd(x, a, b);                                                  \
    }                                                                                          \
    ++rounds;                                                                                  \
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); \
  } while (elapsed < seconds);                                                                 \
  float sink = 0;                                                                              \
  for (auto& x : acc) sink += first(x);                                                        \
  if (sink == 42.0f) std::puts(""); /* keeps the loop observable */                            \
  return static_cast<double>(rounds) * kInner * 12.0 * (lanes) / elapsed;

__attribute__((target("avx2,fma"))) double CoreFmaPerSecondAvx2(double seconds) {
  IOTINFER_FMA_CHAINS(__m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_cvtss_f32)
}

__attribute__((target("avx512f"))) double CoreFmaPerSecondAvx512(double seconds) {
  IOTINFER_FMA_CHAINS(__m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_cvtss_f32)
}
#undef IOTINFER_FMA_CHAINS

// All cores at once, each its best of `windows` windows of `seconds`: on a machine shared with
// other work, the best window is the closest to what the core can do.
double MachineFmaPerSecond(int threads, int windows, double seconds, double (*core)(double)) {
  std::vector<double> per_core(threads);
  std::vector<std::jthread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int w = 0; w < windows; ++w) per_core[t] = std::max(per_core[t], core(seconds));
    });
  }
  workers.clear();
  double total = 0;
  for (double v : per_core) total += v;
  return total;
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

const char* Bool(bool b) { return b ? "true" : "false"; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"iotinfer inference benchmark"};
  std::string model_path;
  std::vector<int> batches{1, 8, 64, 256};
  double seconds = 3.0;
  int threads = 0;
  std::string engine = "auto";
  app.add_option("--model", model_path, "ONNX model (default: the committed one)");
  app.add_option("--engine", engine, "auto, onednn, onednn-int8 or opencv")
      ->check(CLI::IsMember(iotinfer::model::EngineNames()));
  app.add_option("--batches", batches, "batch sizes")->delimiter(',');
  app.add_option("--seconds", seconds, "measuring time per batch size");
  app.add_option("--threads", threads, "inference threads (0: one per core)");
  int peak_windows = 8;
  app.add_option("--peak-windows", peak_windows, "FMA peak: the best of this many 0.25 s windows (0: not measured)");
  CLI11_PARSE(app, argc, argv);

  auto data =
      iotinfer::dataset::LoadFashionMnist(iotinfer::dataset::kFashionMnistDefaultDir, iotinfer::dataset::Split::kTest);
  if (!data) return std::fprintf(stderr, "%s\n", data.error().message().c_str()), 1;
  auto classifier = iotinfer::model::Classifier::Create(
      {.model_path = model_path, .engine = iotinfer::model::ParseEngine(engine).value(), .threads = threads});
  if (!classifier) return std::fprintf(stderr, "%s\n", classifier.error().message().c_str()), 1;

  // What it runs on: oneDNN's instruction set (ONEDNN_MAX_CPU_ISA caps it) and the CPU's own.
  const std::string isa(iotinfer::model::OnednnIsa());
  const char* max_isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  std::printf(
      "{\"engine\": \"isa\", \"onednn_isa\": \"%s\", \"onednn_max_cpu_isa\": \"%s\", \"avx2\": %s, \"fma\": %s, "
      "\"avx512f\": %s, \"avx512_vnni\": %s}\n",
      isa.c_str(), max_isa ? max_isa : "", Bool(__builtin_cpu_supports("avx2")), Bool(__builtin_cpu_supports("fma")),
      Bool(__builtin_cpu_supports("avx512f")), Bool(__builtin_cpu_supports("avx512vnni")));
  std::fflush(stdout);
  for (int batch : batches) {
    std::vector<iotinfer::ImageView> views(batch);
    std::vector<iotinfer::model::Prediction> out(batch);
    size_t next = 0;
    auto run_one = [&] {
      for (auto& view : views) view = data->image(next++ % data->size());
      if (!(*classifier)->Classify(views, out)) std::abort();
    };
    for (int i = 0; i < 20; ++i) run_one();  // warm-up: allocation and caches
    using Clock = std::chrono::steady_clock;
    const uint64_t rechecked_before = (*classifier)->rechecked();
    const auto start = Clock::now();
    const double cpu_start = ProcessCpuSeconds();
    long calls = 0;
    double elapsed = 0;
    do {
      run_one();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < seconds);
    const double cpu = ProcessCpuSeconds() - cpu_start;
    // CPU time per image moves less than wall time when other work shares the cores.
    std::printf(
        "{\"engine\": \"iotinfer\", \"inference_engine\": \"%s\", \"batch\": %d, \"threads\": %d, "
        "\"images_per_second\": %.1f, \"cpu_us_per_image\": %.3f, \"latency_ms\": %.4f, \"rechecked\": %.4f, "
        "\"opencv\": \"" CV_VERSION "\"}\n",
        std::string(iotinfer::model::EngineName((*classifier)->engine())).c_str(), batch, (*classifier)->threads(),
        calls * batch / elapsed, 1e6 * cpu / (static_cast<double>(calls) * batch), 1000.0 * elapsed / calls,
        static_cast<double>((*classifier)->rechecked() - rechecked_before) / (static_cast<double>(calls) * batch));
    std::fflush(stdout);
  }
  // The peak of the vectors oneDNN may use: AVX-512 FMAs where its ISA has them (twice AVX2's
  // on CPUs with two 512-bit FMA units, the same on those that split them, such as AMD's Zen
  // 4), AVX2 FMAs otherwise. Both are measured where both are allowed, and the larger counts.
  if (peak_windows <= 0) return 0;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const double avx2 = MachineFmaPerSecond(cores, peak_windows, 0.25, CoreFmaPerSecondAvx2);
  const bool wide = isa.starts_with("avx512") && __builtin_cpu_supports("avx512f");
  const double avx512 = wide ? MachineFmaPerSecond(cores, peak_windows, 0.25, CoreFmaPerSecondAvx512) : 0.0;
  std::printf(
      "{\"engine\": \"fma-peak\", \"threads\": %d, \"isa\": \"%s\", \"fma_per_second\": %.4g, "
      "\"avx2_fma_per_second\": %.4g, \"avx512_fma_per_second\": %.4g}\n",
      cores, wide ? "avx512" : "avx2", std::max(avx2, avx512), avx2, avx512);
  return 0;
}
