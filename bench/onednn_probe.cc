// A probe, not part of the build: how fast oneDNN (Debian's libdnnl-dev 2.6.3) runs the shape
// of iotinfer's model (conv 32k5s2, 64k3s2, 128k3s2, each with bias and ReLU, then FC 2048->10)
// as OnednnNet builds it, layer by layer, to choose layouts and engines per ISA. Random
// weights: it measures time, not accuracy.
//
//   sudo apt-get install libdnnl-dev
//   g++ -O2 -std=c++17 bench/onednn_probe.cc -o /tmp/onednn_probe -ldnnl
//   /tmp/onednn_probe int8 any                     # the default engine's layers
//   ONEDNN_MAX_CPU_ISA=AVX2 /tmp/onednn_probe f32 blocked 16,64
//   ONEDNN_MAX_CPU_ISA=AVX2 /tmp/onednn_probe int8 any 64 impls
//
// MODE: f32; int8 (every layer but the first convolution, whose f32 output a reorder
// quantizes, as OnednnNet does); int8all (the first convolution too, on u8 pixels).
// LAYOUT of the activations: any (oneDNN chooses, as OnednnNet lets it), nhwc, or blocked
// (nChw8c, or nChw16c where the ISA has AVX-512). "impls" lists every implementation oneDNN
// offers for each layer with its time, in the order it would try them.
//
// Times are per image, in CPU time of the one thread that runs (oneDNN gets one thread), so
// that other work on a shared machine moves them less than wall time; the last column is wall
// time. Results are in docs/bench-log.md.
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>
using namespace dnnl;
using dt = memory::data_type;
using tag = memory::format_tag;

namespace {

double ThreadSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char* IsaName(cpu_isa isa) {
  switch (isa) {
    case cpu_isa::avx2:
      return "avx2";
    case cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case cpu_isa::avx512_core:
      return "avx512_core";
    case cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

bool HasAvx512() {
  const cpu_isa isa = get_effective_cpu_isa();
  return isa != cpu_isa::avx2 && isa != cpu_isa::avx2_vnni && isa != cpu_isa::avx && isa != cpu_isa::sse41;
}

struct Step {
  std::string name, impl;
  primitive prim;
  std::unordered_map<int, memory> args;
  double seconds = 0;
};

struct Net {
  engine eng{engine::kind::cpu, 0};
  stream s{eng};
  std::vector<Step> steps;
  memory::dim N;

  memory Random(const memory::desc& md) {
    memory m(md, eng);
    const size_t n = md.get_size();
    auto* p = static_cast<unsigned char*>(m.get_data_handle());
    if (md.data_type() == dt::f32) {
      auto* f = static_cast<float*>(m.get_data_handle());
      for (size_t i = 0; i < n / 4; ++i) f[i] = static_cast<float>(rand() % 200 - 100) / 1000.f;
    } else {
      for (size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(rand() % 64);
    }
    return m;
  }

  // `src` in the layout `want`, times `scale` (a step when anything changes).
  memory Into(const memory& src, const memory::desc& want, float scale, const std::string& name) {
    if (src.get_desc() == want && scale == 1.f) return src;
    memory to(want, eng);
    primitive_attr attr;
    if (scale != 1.f) attr.set_output_scales(0, {scale});
    reorder::primitive_desc pd(src, to, attr);
    steps.push_back({name, pd.impl_info_str(), reorder(pd), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, to}}});
    return to;
  }

  // The primitive descriptor `pd` as a step after `src`, with random weights and bias.
  template <typename Pd>
  memory Add(const Pd& pd, memory src, const std::string& name) {
    using Primitive = std::conditional_t<std::is_same_v<Pd, convolution_forward::primitive_desc>, convolution_forward,
                                         inner_product_forward>;
    src = Into(src, pd.src_desc(), src.get_desc().data_type() == pd.src_desc().data_type() ? 1.f : 50.f,
               "reorder to " + name);
    memory dst(pd.dst_desc(), eng);
    steps.push_back({name,
                     pd.impl_info_str(),
                     Primitive(pd),
                     {{DNNL_ARG_SRC, src},
                      {DNNL_ARG_WEIGHTS, Random(pd.weights_desc())},
                      {DNNL_ARG_BIAS, Random(pd.bias_desc())},
                      {DNNL_ARG_DST, dst}}});
    return dst;
  }

  Net(memory::dim n, const std::string& mode, tag act, bool list_impls) : N(n) {
    struct L {
      int ic, oc, k, in, out;
    };
    const L layers[] = {{1, 32, 5, 28, 14}, {32, 64, 3, 14, 7}, {64, 128, 3, 7, 4}};
    memory src(memory::desc({N, 1, 28, 28}, dt::f32, tag::nchw), eng);
    src = Random(src.get_desc());
    for (int i = 0; i < 3; ++i) {
      const L& l = layers[i];
      const bool int8 = mode == "int8all" || (mode == "int8" && i > 0);
      const dt a = int8 ? dt::u8 : dt::f32, w = int8 ? dt::s8 : dt::f32;
      // The input stays NCHW f32 as the caller's; a single channel makes it nhwc too.
      const tag src_tag = i == 0 && !int8 ? (act == tag::any ? tag::any : tag::nchw) : act;
      memory::desc src_md({N, l.ic, l.in, l.in}, a, src_tag);
      memory::desc wei_md({l.oc, l.ic, l.k, l.k}, w, tag::any);
      memory::desc bia_md({l.oc}, dt::f32, tag::a);
      memory::desc dst_md({N, l.oc, l.out, l.out}, a, act);
      convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct, src_md, wei_md, bia_md,
                                  dst_md, {2, 2}, {l.k / 2, l.k / 2}, {l.k / 2, l.k / 2});
      primitive_attr attr;
      if (int8) attr.set_output_scales(2, std::vector<float>(l.oc, 0.01f));
      post_ops po;
      po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(po);
      convolution_forward::primitive_desc pd(d, attr, eng);
      // PROBE_SKIP=brgconv: the first implementation whose name does not start with it.
      if (const char* skip = std::getenv("PROBE_SKIP")) {
        convolution_forward::primitive_desc first = pd;
        while (std::string(pd.impl_info_str()).rfind(skip, 0) == 0) {
          if (!pd.next_impl()) {
            pd = first;
            break;
          }
        }
      }
      const std::string name = "conv" + std::to_string(i + 1);
      if (list_impls) ListImpls(pd, name);
      src = Add(pd, src, name);
    }
    const bool int8 = mode != "f32";
    // FC 128x4x4 -> 10, f32 out, on the last convolution's layout where the type matches.
    memory::desc fsrc = src.get_desc();
    memory::desc fwei({10, 128, 4, 4}, int8 ? dt::s8 : dt::f32, tag::any), fbia({10}, dt::f32, tag::a),
        fdst({N, 10}, dt::f32, tag::nc);
    inner_product_forward::desc d(prop_kind::forward_inference, fsrc, fwei, fbia, fdst);
    primitive_attr attr;
    if (int8) attr.set_output_scales(2, std::vector<float>(10, 0.01f));
    inner_product_forward::primitive_desc pd(d, attr, eng);
    if (list_impls) ListImpls(pd, "fc");
    Add(pd, src, "fc");
  }

  // Times every implementation `pd` can iterate to, each on its own layouts, alone.
  template <typename Pd>
  void ListImpls(Pd pd, const std::string& name) {
    do {
      Net one = *this;
      one.steps.clear();
      memory src = one.Random(pd.src_desc());
      one.Add(pd, src, name);
      one.Run(20);
      one.Clear();
      const double t0 = ThreadSeconds();
      long runs = 0;
      while (ThreadSeconds() - t0 < 0.3) one.Run(1), ++runs;
      std::printf("  %-6s %-28s %8.2f us/image  src %s\n", name.c_str(), pd.impl_info_str(),
                  one.steps[0].seconds / runs / N * 1e6, Describe(pd.src_desc()).c_str());
    } while (pd.next_impl());
  }

  static std::string Describe(const memory::desc& md) {
    std::ostringstream out;
    const auto& b = md.data.format_desc.blocking;
    out << "strides";
    for (int i = 0; i < md.data.ndims; ++i) out << (i ? "," : " ") << b.strides[i];
    for (int i = 0; i < b.inner_nblks; ++i) out << " block " << b.inner_idxs[i] << "x" << b.inner_blks[i];
    return out.str();
  }

  void Clear() {
    for (auto& step : steps) step.seconds = 0;
  }
  void Run(int times) {
    for (int t = 0; t < times; ++t) {
      for (auto& step : steps) {
        const double t0 = ThreadSeconds();
        step.prim.execute(s, step.args);
        s.wait();
        step.seconds += ThreadSeconds() - t0;
      }
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "int8";
  const std::string layout = argc > 2 ? argv[2] : "any";
  std::vector<memory::dim> batches{1, 8, 16, 32, 64, 256};
  if (argc > 3) {
    batches.clear();
    std::istringstream list(argv[3]);
    for (std::string b; std::getline(list, b, ',');) batches.push_back(std::stol(b));
  }
  const bool list_impls = argc > 4 && std::string(argv[4]) == "impls";
  const double seconds = std::getenv("PROBE_SECONDS") ? std::atof(std::getenv("PROBE_SECONDS")) : 2.0;
  // PROBE_THREADS=2: oneDNN's own threads inside each layer, to compare with the replicas
  // OnednnNet's callers run (CPU time then counts the calling thread only: read wall time).
  omp_set_num_threads(std::getenv("PROBE_THREADS") ? std::atoi(std::getenv("PROBE_THREADS")) : 1);
  const tag act = layout == "nhwc"      ? tag::nhwc
                  : layout == "blocked" ? (HasAvx512() ? tag::nChw16c : tag::nChw8c)
                                        : tag::any;
  std::printf("oneDNN %d.%d.%d, effective ISA %s, %s, activations %s\n", version()->major, version()->minor,
              version()->patch, IsaName(get_effective_cpu_isa()), mode.c_str(), layout.c_str());
  for (memory::dim batch : batches) {
    if (list_impls) std::printf("batch %ld, every implementation:\n", static_cast<long>(batch));
    Net net(batch, mode, act, list_impls);
    net.Run(20);
    net.Clear();
    const auto wall0 = std::chrono::steady_clock::now();
    const double cpu0 = ThreadSeconds();
    long images = 0;
    while (ThreadSeconds() - cpu0 < seconds) net.Run(1), images += batch;
    const double cpu = ThreadSeconds() - cpu0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    std::printf("batch %ld: %.0f img per CPU s (%.0f img/s wall)\n", static_cast<long>(batch), images / cpu,
                images / wall);
    for (const auto& step : net.steps) {
      std::printf("  %-16s %-28s %7.2f us/image %5.1f%%\n", step.name.c_str(), step.impl.c_str(),
                  step.seconds / images * 1e6, 100 * step.seconds / cpu);
    }
  }
}
