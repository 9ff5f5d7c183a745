// A probe, not part of the build: how fast oneDNN (Debian's libdnnl-dev 2.6.3) runs the shape
// of iotinfer's model (conv 32k5s2, 64k3s2, 128k3s2, each with bias and ReLU, then FC 2048->10),
// in int8 (u8 activations, s8 weights, VNNI) and in f32, to size a oneDNN backend for the
// classifier. Random weights: it measures time, not accuracy.
//
//   sudo apt-get install libdnnl-dev
//   g++ -O2 -std=c++17 bench/onednn_probe.cc -o /tmp/onednn_probe -ldnnl
//   OMP_NUM_THREADS=1 /tmp/onednn_probe int8 nhwc     # or: f32 nhwc, f32 any
//
// Its results are in docs/bench-log.md.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>
using namespace dnnl;
using dt = memory::data_type;
using tag = memory::format_tag;

struct Net {
  engine eng{engine::kind::cpu, 0};
  stream s{eng};
  std::vector<primitive> prims;
  std::vector<std::unordered_map<int, memory>> args;
  memory input;
  memory::dim N;

  memory Fill(const memory::desc& md, dt t) {
    memory m(md, eng);
    size_t n = md.get_size();
    auto* p = static_cast<unsigned char*>(m.get_data_handle());
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(rand() % (t == dt::f32 ? 1 : 7));
    if (t == dt::f32) {
      auto* f = static_cast<float*>(m.get_data_handle());
      for (size_t i = 0; i < n / 4; ++i) f[i] = (rand() % 200 - 100) / 1000.f;
    }
    return m;
  }

  Net(memory::dim n, bool int8, tag act) : N(n) {
    const dt a = int8 ? dt::u8 : dt::f32, w = int8 ? dt::s8 : dt::f32;
    struct L {
      int ic, oc, k, in, out;
    };
    L layers[] = {{1, 32, 5, 28, 14}, {32, 64, 3, 14, 7}, {64, 128, 3, 7, 4}};
    memory::desc cur({N, 1, 28, 28}, a, act == tag::any ? tag::nhwc : act);
    input = Fill(cur, a);
    memory src = input;
    for (auto& l : layers) {
      memory::desc src_md({N, l.ic, l.in, l.in}, a, act);
      memory::desc wei_md({l.oc, l.ic, l.k, l.k}, w, tag::any);
      memory::desc bia_md({l.oc}, dt::f32, tag::a);
      memory::desc dst_md({N, l.oc, l.out, l.out}, a, act);
      convolution_forward::desc d(prop_kind::forward_inference, algorithm::convolution_direct, src_md, wei_md, bia_md,
                                  dst_md, {2, 2}, {l.k / 2, l.k / 2}, {l.k / 2, l.k / 2});
      primitive_attr attr;
      if (int8) attr.set_output_scales(0, {0.01f});
      post_ops po;
      po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(po);
      convolution_forward::primitive_desc pd(d, attr, eng);
      src = Append<convolution_forward>(pd, src, {l.oc, l.ic, l.k, l.k}, w);
    }
    // FC 128x4x4 -> 10, f32 out.
    memory::desc fsrc({N, 128, 4, 4}, a, tag::any), fwei({10, 128, 4, 4}, w, tag::any), fbia({10}, dt::f32, tag::a),
        fdst({N, 10}, dt::f32, tag::nc);
    inner_product_forward::desc d(prop_kind::forward_inference, fsrc, fwei, fbia, fdst);
    primitive_attr attr;
    if (int8) attr.set_output_scales(0, {0.01f});
    inner_product_forward::primitive_desc pd(d, attr, eng);
    Append<inner_product_forward>(pd, src, {10, 128, 4, 4}, w);
  }

  // Appends `pd`'s primitive after `src` (reordered first to the layout it asks for), with
  // random weights of `wei` dims and a random bias; returns its output.
  template <typename Primitive, typename PrimitiveDesc>
  memory Append(const PrimitiveDesc& pd, memory src, const memory::dims& wei, dt w) {
    if (pd.src_desc() != src.get_desc()) {
      memory r(pd.src_desc(), eng);
      prims.push_back(reorder(src, r));
      args.push_back({{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, r}});
      src = r;
    }
    memory wts(pd.weights_desc(), eng);
    memory plain = Fill(memory::desc(wei, w, tag::oihw), w);
    reorder(plain, wts).execute(s, plain, wts);
    memory bias = Fill(pd.bias_desc(), dt::f32), dst(pd.dst_desc(), eng);
    prims.push_back(Primitive(pd));
    args.push_back({{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wts}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    return dst;
  }
  void Run() {
    for (size_t i = 0; i < prims.size(); ++i) prims[i].execute(s, args[i]);
    s.wait();
  }
};

int main(int argc, char** argv) {
  const bool int8 = argc > 1 && std::string(argv[1]) == "int8";
  const tag act = argc > 2 && std::string(argv[2]) == "any" ? tag::any : tag::nhwc;
  for (memory::dim batch : {1, 8, 64, 256}) {
    Net net(batch, int8, act);
    for (int i = 0; i < 20; ++i) net.Run();
    auto t0 = std::chrono::steady_clock::now();
    long images = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2)) {
      net.Run();
      images += batch;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s %s batch %ld: %.0f img/s\n", int8 ? "int8" : "f32", act == tag::any ? "any" : "nhwc",
                static_cast<long>(batch), images / s);
  }
}
