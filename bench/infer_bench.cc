// Inference throughput of iotinfer's classifier on the Fashion-MNIST test images, one JSON
// line per batch size. Driven by bench/infer.py (`./dev bench infer`).
#include <immintrin.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <opencv2/core/version.hpp>
#include <thread>
#include <vector>

#include "dataset/dataset.h"
#include "model/classifier.h"

namespace {

// FP32 fused multiply-adds per second one core sustains: 12 independent 8-lane FMA chains
// hide the 4-cycle latency on two FMA pipes. Measured rather than computed from a nominal
// clock, which under turbo or a hypervisor says little.
__attribute__((target("avx2,fma"))) double CoreFmaPerSecond(double seconds) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  constexpr long kInner = 1 << 20;
  long rounds = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    for (long i = 0; i < kInner; ++i) {
      for (auto& x : acc) x = _mm256_fmadd_ps(x, a, b);
    }
    ++rounds;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  float sink = 0;
  for (auto& x : acc) sink += _mm256_cvtss_f32(x);
  if (sink == 42.0f) std::puts("");  // keeps the loop observable
  return rounds * kInner * 12.0 * 8.0 / elapsed;
}

double MachineFmaPerSecond(int threads, double seconds) {
  std::vector<double> per_core(threads);
  std::vector<std::jthread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { per_core[t] = CoreFmaPerSecond(seconds); });
  workers.clear();
  double total = 0;
  for (double v : per_core) total += v;
  return total;
}

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
  CLI11_PARSE(app, argc, argv);

  auto data =
      iotinfer::dataset::LoadFashionMnist(iotinfer::dataset::kFashionMnistDefaultDir, iotinfer::dataset::Split::kTest);
  if (!data) return std::fprintf(stderr, "%s\n", data.error().message().c_str()), 1;
  auto classifier = iotinfer::model::Classifier::Create(
      {.model_path = model_path, .engine = iotinfer::model::ParseEngine(engine).value(), .threads = threads});
  if (!classifier) return std::fprintf(stderr, "%s\n", classifier.error().message().c_str()), 1;

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
    long calls = 0;
    double elapsed = 0;
    do {
      run_one();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < seconds);
    std::printf(
        "{\"engine\": \"iotinfer\", \"inference_engine\": \"%s\", \"batch\": %d, \"threads\": %d, "
        "\"images_per_second\": %.1f, \"latency_ms\": %.4f, \"rechecked\": %.4f, \"opencv\": \"" CV_VERSION "\"}\n",
        std::string(iotinfer::model::EngineName((*classifier)->engine())).c_str(), batch, (*classifier)->threads(),
        calls * batch / elapsed, 1000.0 * elapsed / calls,
        static_cast<double>((*classifier)->rechecked() - rechecked_before) / (static_cast<double>(calls) * batch));
    std::fflush(stdout);
  }
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  std::printf("{\"engine\": \"fma-peak\", \"threads\": %d, \"fma_per_second\": %.4g}\n", cores,
              MachineFmaPerSecond(cores, 2.0));
  return 0;
}
