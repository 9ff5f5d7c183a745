#include "model/onednn_net.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <opencv2/dnn/all_layers.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "model/pixel_conv.h"
#include "model/quantize.h"

namespace iotinfer::model {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;
constexpr memory::data_type kU8 = memory::data_type::u8;
constexpr memory::data_type kS8 = memory::data_type::s8;
// Images per primitive run: 16 took the same CPU time per image as 64 in int8, and 3-8% less
// in float32, whose activations for 16 images stay in a core's L2 cache (the first
// convolution's output is 25 KB an image), on AVX2 and AVX-512 (docs/bench-log.md, 2026-12-05).
constexpr memory::dim kChunk = 16;
// A last chunk of up to this many images runs at its own size; a larger one is padded to the
// next power of two. The float32 rechecks of the int8 engine come a few images at a time, and
// padding them to a power of two was a fifth of their work (docs/bench-log.md, 2026-12-05).
constexpr memory::dim kExactUpTo = 8;

// The batch size of the plan that runs a chunk of `m` images.
memory::dim PlanSize(memory::dim m) {
  if (m <= kExactUpTo) return m;
  memory::dim size = 1;
  while (size < m) size *= 2;
  return size;
}

// Whether to pass over oneDNN's brgemm-based convolutions for its older direct JIT ones. On
// AVX-512 without AMX (measured on an AMD EPYC with AVX-512, VNNI and bf16), brgconv, oneDNN
// 2.6's first choice, took 1.6x the direct kernel's time on the first convolution (one input
// channel) and 1.15x on the int8 ones (docs/bench-log.md, 2026-12-05). With AMX, brgconv is
// the only kernel that uses it. On AVX2, oneDNN 2.6 has no brgconv.
bool AvoidBrgconv() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core:
    case dnnl::cpu_isa::avx512_core_vnni:
    case dnnl::cpu_isa::avx512_core_bf16:
      return true;
    default:
      return false;
  }
}

// Attributes for a primitive that uses the scratchpad its plan step passes it, not the
// library's. The replicas' nets build the same primitives, which oneDNN's primitive cache
// shares between their threads, and run them at once; oneDNN's guide makes a scratchpad of
// each caller's own the condition for running one primitive on several threads.
dnnl::primitive_attr OwnScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Whether oneDNN's widest vectors here are AVX2's (with or without VNNI), as on CPUs without
// AVX-512 or where ONEDNN_MAX_CPU_ISA caps it.
bool AvxTwoAtMost() {
  const auto isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx2 || isa == dnnl::cpu_isa::avx2_vnni;
}

// `pd` moved to its first implementation that AvoidBrgconv() allows, if it has one. The
// operation descriptor `pd` was made from must still exist: oneDNN 2.6's iterator reads it
// through a pointer (with a temporary, next_impl() found nothing at -O2).
void PreferDirect(dnnl::convolution_forward::primitive_desc& pd) {
  static const bool avoid = AvoidBrgconv();
  if (!avoid) return;
  const dnnl::convolution_forward::primitive_desc first = pd;
  while (std::string_view(pd.impl_info_str()).starts_with("brg")) {
    if (!pd.next_impl()) {
      pd = first;
      return;
    }
  }
}

// One layer as read from OpenCV: a convolution (with or without a ReLU after it) or the
// final fully connected layer. Weights keep OpenCV's layouts: OIHW, and [out, in].
struct Layer {
  bool dense = false;
  bool relu = false;
  Dims src;  // {C, H, W} of its input
  Dims kernel, strides, pads_begin, pads_end;
  int outputs = 0;
  cv::Mat weights, bias;
};

Dims ToDims(const std::vector<size_t>& values) { return Dims(values.begin(), values.end()); }

// {C, H, W} of a convolution's output.
Dims ConvolutionOutput(const Layer& l) {
  Dims out{l.outputs, 0, 0};
  for (int d = 0; d < 2; ++d)
    out[d + 1] = (l.src[d + 1] + l.pads_begin[d] + l.pads_end[d] - l.kernel[d]) / l.strides[d] + 1;
  return out;
}

// The layer sequence of `net`, checked to be a chain oneDNN can run as built here.
Result<std::vector<Layer>> ReadLayers(cv::dnn::Net& net, Dims shape) {
  std::vector<Layer> layers;
  bool flattened = false;
  int previous = 0;  // the input pseudo-layer
  for (const std::string& name : net.getLayerNames()) {
    const int id = net.getLayerId(name);
    cv::Ptr<cv::dnn::Layer> layer = net.getLayer(id);
    auto unsupported = [&](std::string_view why) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("layer {} ({}) cannot run on oneDNN here: {}", name, layer->type, why)));
    };
    const std::vector<cv::Ptr<cv::dnn::Layer>> inputs = net.getLayerInputs(id);
    if (inputs.size() != 1 || net.getLayerId(inputs[0]->name) != previous) {
      return unsupported("the network is not a single chain");
    }
    previous = id;
    if (layer->type == "Flatten" || layer->type == "Identity") {
      flattened |= layer->type == "Flatten";
      continue;
    }
    if (!layers.empty() && layers.back().dense) return unsupported("nothing may follow the fully connected layer");
    if (auto* relu = dynamic_cast<cv::dnn::ReLULayer*>(layer.get())) {
      if (relu->negativeSlope != 0.f) return unsupported("a leaky ReLU");
      if (layers.empty() || layers.back().relu || flattened) return unsupported("a ReLU must follow a convolution");
      layers.back().relu = true;
      continue;
    }
    if (auto* conv = dynamic_cast<cv::dnn::ConvolutionLayer*>(layer.get())) {
      if (flattened) return unsupported("a convolution after the flatten");
      if (!conv->padMode.empty()) return unsupported("auto padding");
      if (conv->kernel_size.size() != 2) return unsupported("not a 2-D convolution");
      for (size_t d : conv->dilations) {
        if (d != 1) return unsupported("a dilated convolution");
      }
      const cv::Mat& weights = layer->blobs.at(0);
      if (weights.dims != 4 || weights.size[1] != shape[0]) return unsupported("a grouped convolution");
      Layer l{.src = shape,
              .kernel = ToDims(conv->kernel_size),
              .strides = ToDims(conv->strides),
              .pads_begin = ToDims(conv->pads_begin),
              .pads_end = ToDims(conv->pads_end),
              .outputs = weights.size[0],
              .weights = weights};
      if (layer->blobs.size() > 1) l.bias = layer->blobs[1];
      shape = ConvolutionOutput(l);
      layers.push_back(std::move(l));
      continue;
    }
    if (layer->type == "InnerProduct") {
      const cv::Mat& weights = layer->blobs.at(0);
      if (weights.dims != 2 || weights.size[1] != shape[0] * shape[1] * shape[2]) {
        return unsupported(
            fmt::format("weights for {} inputs, but {}x{}x{} arrive", weights.size[1], shape[0], shape[1], shape[2]));
      }
      Layer l{.dense = true, .src = shape, .outputs = weights.size[0], .weights = weights};
      if (layer->blobs.size() > 1) l.bias = layer->blobs[1];
      layers.push_back(std::move(l));
      continue;
    }
    return unsupported("no oneDNN counterpart here");
  }
  if (layers.empty() || !layers.back().dense) {
    return std::unexpected(Error::InvalidInput("the network does not end in a fully connected layer"));
  }
  return layers;
}

// The steps for one batch size, with their memories: oneDNN primitives, and the quantization
// of the first convolution's output where it is done here.
struct Plan {
  memory input;   // NCHW f32, the caller's buffer
  memory output;  // [n, classes] f32, the caller's buffer
  std::vector<std::function<void(dnnl::stream&)>> steps;
  std::vector<memory> activations;           // each convolution's output, for calibration
  std::vector<std::string> implementations;  // what runs each step, as Implementations() says
};

// Per-output-channel int8 weights: OIHW (or [out, C, H, W]) s8 values and the scale of each
// row, chosen so its largest |weight| maps to 127.
struct QuantizedWeights {
  std::vector<int8_t> values;
  std::vector<float> scales;
};

// With `paired` (CPUs without VNNI), the scale is chosen instead so that the largest sum of two
// |weights| the kernels add in 16 bits maps to 127. oneDNN's AVX2 int8 kernels multiply u8 by
// s8 with vpmaddubsw, which adds the products of input channels 2k and 2k+1 at the same tap
// into one saturating 16-bit lane (the weights' innermost block holds 4 input channels, and
// the dense layer's source is NHWC, so channels are innermost there too): 255 x 128 fits, and
// rounding takes two weights scaled to at most 127 together to at most 128. Against 7-bit
// weights (63 steps each) that took a third of the rechecks away: the committed model's margin
// fell from 0.70 to 0.43 logits, its test images rechecked from 8.6% to 5.6%.
QuantizedWeights Quantize(const cv::Mat& weights, int outputs, int channels, bool paired) {
  const size_t row = weights.total() / outputs;
  const size_t taps = row / channels;  // kernel taps, or the dense layer's H x W
  const float* w = weights.ptr<float>();
  QuantizedWeights q{std::vector<int8_t>(weights.total()), std::vector<float>(outputs)};
  for (int o = 0; o < outputs; ++o) {
    const float* r = w + o * row;
    float largest = 0.f;
    for (size_t i = 0; i < row; ++i) largest = std::max(largest, std::abs(r[i]));
    if (paired) {
      for (int c = 0; c + 1 < channels; c += 2) {
        for (size_t t = 0; t < taps; ++t) {
          largest = std::max(largest, std::abs(r[c * taps + t]) + std::abs(r[(c + 1) * taps + t]));
        }
      }
    }
    q.scales[o] = largest > 0.f ? largest / 127.f : 1.f;
    for (size_t i = 0; i < row; ++i) {
      q.values[o * row + i] = static_cast<int8_t>(std::lround(w[o * row + i] / q.scales[o]));
    }
  }
  return q;
}

}  // namespace

struct OnednnNet::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  Dims input_shape;  // {C, H, W}
  std::vector<Layer> layers;
  // Plans are built on first use of a batch size and kept.
  std::map<memory::dim, Plan> plans;
  // Each layer's weights in the layouts its primitives asked for (oneDNN may pick another for
  // another batch size, so there can be more than one), shared by the plans.
  std::vector<std::vector<memory>> weights;
  std::vector<float> padded_input, padded_logits;  // a last chunk rounded up to its plan's size
  // int8 when not empty: the largest |value| each convolution outputs, from calibration.
  std::vector<float> ranges;
  bool paired_weights = false;  // scaled for vpmaddubsw's pair sums (Quantize): weight_bits 7

  // A user-layout copy of an OpenCV blob (float32, contiguous) as a oneDNN memory.
  memory Wrap(const cv::Mat& blob, const Dims& dims, Tag tag) const {
    memory m({dims, kF32, tag}, engine);
    std::memcpy(m.get_data_handle(), blob.ptr<float>(), blob.total() * sizeof(float));
    return m;
  }

  // `args` with a scratchpad of their own as `scratchpad` describes, if it needs one
  // (OwnScratchpad).
  std::unordered_map<int, memory> WithScratchpad(std::unordered_map<int, memory> args,
                                                 const memory::desc& scratchpad) const {
    if (scratchpad.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(scratchpad, engine));
    return args;
  }

  // Appends `primitive` to the plan's steps, run with `args` and a scratchpad of its own as
  // `scratchpad` describes; `implementation` names it.
  void Append(Plan& plan, dnnl::primitive primitive, std::unordered_map<int, memory> args, std::string implementation,
              const memory::desc& scratchpad) const {
    args = WithScratchpad(std::move(args), scratchpad);
    plan.steps.push_back(
        [primitive = std::move(primitive), args = std::move(args)](dnnl::stream& s) { primitive.execute(s, args); });
    plan.implementations.push_back(std::move(implementation));
  }

  // `from` in the layout and type `to` describes, its values multiplied by `factor` (no step
  // when nothing changes). Quantizing float32 into u8 NHWC, the int8 layers' input, is done
  // here where the CPU allows: oneDNN 2.6's reorder for it took 40% of the first convolution's
  // time, 2.4x what QuantizeToNhwcU8 takes.
  memory Reordered(Plan& plan, const memory& from, const memory::desc& to, float factor) {
    if (from.get_desc() == to && factor == 1.f) return from;
    memory result(to, engine);
    const auto runs = ChannelRunsOf(from.get_desc());
    if (runs && CanQuantizeToNhwcU8() && to == memory::desc(to.dims(), kU8, Tag::nhwc)) {
      plan.steps.push_back([from, result, runs = *runs, factor](dnnl::stream& s) {
        s.wait();
        QuantizeToNhwcU8(static_cast<const float*>(from.get_data_handle()), runs, factor,
                         static_cast<uint8_t*>(result.get_data_handle()));
      });
      plan.implementations.push_back("reorder iotinfer:avx2");
      return result;
    }
    dnnl::primitive_attr attr = OwnScratchpad();
    if (factor != 1.f) attr.set_output_scales(0, {factor});
    const dnnl::reorder::primitive_desc pd(from, result, attr);
    Append(plan, dnnl::reorder(pd), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, result}},
           fmt::format("reorder {}", pd.impl_info_str()), pd.scratchpad_desc());
    return result;
  }

  // Layer `layer`'s weights in the layout its primitive asked for: `plain` reordered once, and
  // kept for the plans that ask for the same.
  memory Weights(size_t layer, memory plain, const memory::desc& wanted) {
    if (plain.get_desc() == wanted) return plain;
    if (weights.size() <= layer) weights.resize(layer + 1);
    for (const memory& w : weights[layer]) {
      if (w.get_desc() == wanted) return w;
    }
    memory result(wanted, engine);
    const dnnl::reorder::primitive_desc pd(plain, result, OwnScratchpad());
    dnnl::reorder(pd).execute(stream,
                              WithScratchpad({{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, result}}, pd.scratchpad_desc()));
    stream.wait();
    weights[layer].push_back(result);
    return result;
  }

  // How a layer runs: in float32, or in int8 with its source and output quantized (a scale is
  // the real value of one step).
  struct Precision {
    bool int8 = false;
    memory::data_type src_type = kF32, dst_type = kF32;
    float src_scale = 1.f, dst_scale = 1.f;
  };

  // In an int8 net, every layer but the first convolution runs in int8. That one sees exact
  // pixels through only C*k*k weights per output channel, and with 8-bit weights it alone
  // changed twice as many predictions as all the other layers together (38 against 18 of
  // 10,000); it does 7% of the multiply-adds. Its float32 output is quantized for the next
  // layer. Activations are u8 after a ReLU, s8 otherwise, spanning the calibrated range.
  Precision PrecisionOf(size_t layer) const {
    Precision p;
    if (ranges.empty() || layer == 0) return p;
    auto type = [&](size_t conv) { return layers[conv].relu ? kU8 : kS8; };
    auto scale = [&](size_t conv) { return ranges[conv] / (layers[conv].relu ? 255.f : 127.f); };
    p.int8 = true;
    p.src_type = type(layer - 1);
    p.src_scale = scale(layer - 1);
    if (!layers[layer].dense) {
      p.dst_type = type(layer);
      p.dst_scale = scale(layer);
    }
    return p;
  }

  // The primitive's weights and bias, and in int8 its output scales.
  struct LayerParams {
    memory weights, bias;
    dnnl::primitive_attr attr;
  };

  // An int8 layer's integer sum for output channel o is worth src_scale times o's weight
  // scale. oneDNN adds the bias to that sum before it applies the output scales, so the bias
  // is divided by the sum's scale.
  LayerParams Params(const Layer& l, const Dims& weight_dims, const Precision& precision) const {
    LayerParams p{.attr = OwnScratchpad()};
    std::vector<float> bias(l.outputs, 0.f);
    if (!l.bias.empty()) std::copy_n(l.bias.ptr<float>(), l.outputs, bias.begin());
    p.bias = memory({{l.outputs}, kF32, Tag::a}, engine);
    if (!precision.int8) {
      p.weights = Wrap(l.weights, weight_dims, Tag::oihw);
    } else {
      const QuantizedWeights q = Quantize(l.weights, l.outputs, static_cast<int>(l.src[0]), paired_weights);
      p.weights = memory({weight_dims, kS8, Tag::oihw}, engine);
      std::memcpy(p.weights.get_data_handle(), q.values.data(), q.values.size());
      std::vector<float> output_scales(l.outputs);
      for (int o = 0; o < l.outputs; ++o) {
        const float sum_scale = precision.src_scale * q.scales[o];
        output_scales[o] = sum_scale / precision.dst_scale;
        bias[o] /= sum_scale;
      }
      p.attr.set_output_scales(1 << 1, output_scales);  // per channel: dimension 1 of NCHW and NC
    }
    std::copy(bias.begin(), bias.end(), static_cast<float*>(p.bias.get_data_handle()));
    return p;
  }

  // The plan for batches of `n`, built on first use. Internal naming oneDNN's complaint when
  // it cannot be built.
  Result<Plan*> PlanFor(memory::dim n) {
    auto [it, added] = plans.try_emplace(n);
    if (added) {
      // One build at a time in the process. With two replicas building plans at once (their
      // first batches, their first rechecks), a replica's float32 net now and then came out
      // computing garbage for good (logits of 1e14 on a Xeon with AMX, brgconv kernels; a
      // test caught a wrong class in about one run in four), and never with builds taken in
      // turn (0 of 20 runs), nor with oneDNN's primitive cache off. A build takes
      // milliseconds, once per batch size and net.
      static std::mutex building;
      std::lock_guard lock(building);
      try {
        it->second = Build(n);
      } catch (const dnnl::error& e) {
        plans.erase(it);
        return std::unexpected(Error::Internal(fmt::format("oneDNN: {} ({})", e.what(), static_cast<int>(e.status))));
      }
    }
    return &it->second;
  }

  // In an int8 net on AVX2, the first convolution and the quantization of its output in one
  // pass (PixelConvolution), where it applies: a convolution over one channel, with a ReLU. The
  // same bytes as oneDNN's AVX2 kernel and QuantizeToNhwcU8, without storing and reading back
  // the float32 output (25 KB an image on this model). Not on AVX-512, where oneDNN's kernel
  // is twice as wide. Its output, u8 NHWC, or nullopt.
  std::optional<memory> PixelFirstLayer(Plan& plan, memory::dim n) {
    const Layer& l = layers[0];
    if (ranges.empty() || !l.relu || l.dense || l.src[0] != 1 || !AvxTwoAtMost()) return std::nullopt;
    const PixelConvolution::Shape shape{.rows = l.src[1],
                                        .cols = l.src[2],
                                        .kernel_rows = l.kernel[0],
                                        .kernel_cols = l.kernel[1],
                                        .stride_rows = l.strides[0],
                                        .stride_cols = l.strides[1],
                                        .pad_top = l.pads_begin[0],
                                        .pad_left = l.pads_begin[1],
                                        .pad_bottom = l.pads_end[0],
                                        .pad_right = l.pads_end[1],
                                        .outputs = l.outputs};
    const std::span<const float> bias =
        l.bias.empty() ? std::span<const float>{} : std::span(l.bias.ptr<float>(), l.bias.total());
    auto convolution = PixelConvolution::Make(shape, {l.weights.ptr<float>(), l.weights.total()}, bias,
                                              1.f / PrecisionOf(1).src_scale);
    if (!convolution) return std::nullopt;
    const memory dst({{n, l.outputs, convolution->out_rows(), convolution->out_cols()}, kU8, Tag::nhwc}, engine);
    plan.steps.push_back([input = plan.input, dst, n,
                          run = std::make_shared<PixelConvolution>(std::move(*convolution))](dnnl::stream& s) {
      s.wait();
      run->Run(static_cast<const float*>(input.get_data_handle()), n, static_cast<uint8_t*>(dst.get_data_handle()));
    });
    plan.implementations.push_back("conv+reorder iotinfer:avx2");
    plan.activations.push_back(dst);
    return dst;
  }

  Plan Build(memory::dim n) {
    Plan plan;
    plan.input = memory({{n, input_shape[0], input_shape[1], input_shape[2]}, kF32, Tag::nchw}, engine, nullptr);
    memory src = plan.input;
    float src_scale = 1.f;  // of `src`'s values
    size_t first = 0;       // the first layer oneDNN runs
    if (auto pixels = PixelFirstLayer(plan, n)) {
      src = *pixels;
      src_scale = PrecisionOf(1).src_scale;
      first = 1;
    }
    for (size_t i = first; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      const Precision precision = PrecisionOf(i);
      const Dims src_dims{n, l.src[0], l.src[1], l.src[2]};
      // A dense layer's [out, C*H*W] rows are CHW-flattened: as OIHW over the 4-D source they
      // mean the same, whatever the source's layout.
      const Dims weight_dims{l.outputs, l.src[0], l.dense ? l.src[1] : l.kernel[0], l.dense ? l.src[2] : l.kernel[1]};
      LayerParams p = Params(l, weight_dims, precision);
      const memory::desc any_src(src_dims, precision.src_type, Tag::any);
      const memory::desc weights_desc(weight_dims, p.weights.get_desc().data_type(), Tag::any);
      dnnl::primitive step;
      std::string implementation;
      memory::desc wanted_src, wanted_weights, scratchpad;
      memory dst;
      if (l.dense) {
        plan.output = memory({{n, l.outputs}, kF32, Tag::nc}, engine, nullptr);
        // The source as the last convolution left it where it has the type wanted: the weights
        // can take any layout, and reordering the activations cost a tenth of the time.
        const memory::desc dense_src = src.get_desc().data_type() == precision.src_type ? src.get_desc() : any_src;
        dnnl::inner_product_forward::primitive_desc pd(
            {dnnl::prop_kind::forward_inference, dense_src, weights_desc, p.bias.get_desc(), plan.output.get_desc()},
            p.attr, engine);
        std::tie(step, implementation, wanted_src, wanted_weights, dst, scratchpad) =
            std::tuple(dnnl::inner_product_forward(pd), pd.impl_info_str(), pd.src_desc(), pd.weights_desc(),
                       plan.output, pd.scratchpad_desc());
      } else {
        const Dims out = ConvolutionOutput(l);
        dnnl::post_ops post;
        if (l.relu) post.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
        p.attr.set_post_ops(post);
        // Named: oneDNN 2.6's implementation iterator keeps a pointer to it (PreferDirect).
        const dnnl::convolution_forward::desc desc(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, any_src, weights_desc,
            p.bias.get_desc(), memory::desc({n, out[0], out[1], out[2]}, precision.dst_type, Tag::any), l.strides,
            l.pads_begin, l.pads_end);
        dnnl::convolution_forward::primitive_desc pd(desc, p.attr, engine);
        PreferDirect(pd);
        std::tie(step, implementation, wanted_src, wanted_weights, dst, scratchpad) =
            std::tuple(dnnl::convolution_forward(pd), pd.impl_info_str(), pd.src_desc(), pd.weights_desc(),
                       memory(pd.dst_desc(), engine), pd.scratchpad_desc());
        plan.activations.push_back(dst);
      }
      // Quantizes the first convolution's float32 output; otherwise a change of layout.
      memory in = Reordered(plan, src, wanted_src, src_scale / precision.src_scale);
      Append(plan, step,
             {{DNNL_ARG_SRC, in},
              {DNNL_ARG_WEIGHTS, Weights(i, p.weights, wanted_weights)},
              {DNNL_ARG_BIAS, p.bias},
              {DNNL_ARG_DST, dst}},
             implementation, scratchpad);
      src = dst;
      src_scale = precision.dst_scale;
    }
    return plan;
  }
};

OnednnNet::OnednnNet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnNet::~OnednnNet() = default;

Result<std::unique_ptr<OnednnNet>> OnednnNet::FromOpenCv(cv::dnn::Net& net, int channels, int rows, int cols,
                                                         std::span<const float> int8_ranges, int weight_bits) {
  auto impl = std::make_unique<Impl>();
  impl->input_shape = {channels, rows, cols};
  ASSIGN_OR_RETURN(impl->layers, ReadLayers(net, impl->input_shape));
  if (weight_bits == 0) weight_bits = NativeWeightBits();
  if (weight_bits != 7 && weight_bits != 8) {
    return std::unexpected(Error::InvalidInput(fmt::format("int8 weights have 7 or 8 bits, not {}", weight_bits)));
  }
  impl->paired_weights = weight_bits == 7;
  if (!int8_ranges.empty()) {
    const size_t convolutions = impl->layers.size() - 1;
    if (int8_ranges.size() != convolutions) {
      return std::unexpected(Error::InvalidInput(fmt::format(
          "int8 needs a calibrated range for each of the {} convolutions, not {}", convolutions, int8_ranges.size())));
    }
    for (float range : int8_ranges) {
      if (!(range > 0.f) || !std::isfinite(range)) {
        return std::unexpected(Error::InvalidInput(fmt::format("calibrated range {} is not a positive number", range)));
      }
    }
    impl->ranges.assign(int8_ranges.begin(), int8_ranges.end());
  }
  return std::unique_ptr<OnednnNet>(new OnednnNet(std::move(impl)));
}

// Without VNNI, oneDNN multiplies u8 by s8 with vpmaddubsw, whose 16-bit pair sums can
// saturate at full 8-bit range (oneDNN's "int8 computation nuances"): "7" is the scheme whose
// pairs cannot (Quantize).
int OnednnNet::NativeWeightBits() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx2_vnni:
    case dnnl::cpu_isa::avx512_core_vnni:
    case dnnl::cpu_isa::avx512_core_bf16:
    case dnnl::cpu_isa::avx512_core_amx:
      return 8;
    default:
      return 7;
  }
}

std::string_view OnednnNet::Isa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

Status OnednnNet::Forward(std::span<const float> input, std::span<float> logits) { return Run(input, logits, nullptr); }

Result<std::vector<float>> OnednnNet::ActivationRanges(std::span<const float> input) {
  if (int8()) return std::unexpected(Error::FailedPrecondition("calibration runs on the float32 network"));
  std::vector<float> ranges(impl_->layers.size() - 1, 0.f);
  std::vector<float> logits(input.size() / ImageSize() * classes());
  // Blocked layouts pad channels with zeros, which change no maximum.
  TRY(Run(input, logits, [&ranges](const std::vector<memory>& activations) {
    for (size_t i = 0; i < activations.size(); ++i) {
      const auto* values = static_cast<const float*>(activations[i].get_data_handle());
      const size_t count = activations[i].get_desc().get_size() / sizeof(float);
      for (size_t v = 0; v < count; ++v) ranges[i] = std::max(ranges[i], std::abs(values[v]));
    }
  }));
  return ranges;
}

size_t OnednnNet::ImageSize() const {
  return static_cast<size_t>(impl_->input_shape[0] * impl_->input_shape[1] * impl_->input_shape[2]);
}

Status OnednnNet::Run(std::span<const float> input, std::span<float> logits,
                      const std::function<void(const std::vector<memory>&)>& observe) {
  Impl& impl = *impl_;
  const memory::dim image = static_cast<memory::dim>(ImageSize());
  const memory::dim n = static_cast<memory::dim>(input.size()) / image;
  const int classes = this->classes();
  if (n * image != static_cast<memory::dim>(input.size()) || logits.size() != static_cast<size_t>(n * classes)) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("{} input values and {} logits do not make whole images of {} values with {} classes", input.size(),
                    logits.size(), image, classes)));
  }
  // One thread: the Classifier's parallelism is its replicas, one per core, which scale
  // better on this small network than threads inside each layer (as with OpenCV).
  omp_set_num_threads(1);
  // Primitives are built (JIT-compiled) per batch size, which costs milliseconds: the batch
  // runs in chunks of kChunk, and a last, smaller chunk at its own size up to kExactUpTo
  // images, else as the next power of two, padded. So at most kExactUpTo + log2(kChunk /
  // kExactUpTo) plans, whatever sizes a dynamic batcher sends. The padding repeats the chunk's
  // first image, so that calibration sees no activation of a made-up one.
  for (memory::dim begin = 0; begin < n; begin += kChunk) {
    const memory::dim m = std::min<memory::dim>(kChunk, n - begin);
    const memory::dim size = PlanSize(m);
    const float* in = input.data() + begin * image;
    float* out = logits.data() + begin * classes;
    if (size != m) {
      impl.padded_input.resize(static_cast<size_t>(size * image));
      std::copy(in, in + m * image, impl.padded_input.begin());
      for (memory::dim i = m; i < size; ++i) std::copy(in, in + image, impl.padded_input.begin() + i * image);
      impl.padded_logits.resize(static_cast<size_t>(size * classes));
      in = impl.padded_input.data();
      out = impl.padded_logits.data();
    }
    ASSIGN_OR_RETURN(auto plan, impl.PlanFor(size));
    try {
      plan->input.set_data_handle(const_cast<float*>(in));
      plan->output.set_data_handle(out);
      for (auto& step : plan->steps) step(impl.stream);
      impl.stream.wait();
      if (observe) observe(plan->activations);
    } catch (const dnnl::error& e) {
      return std::unexpected(Error::Internal(fmt::format("oneDNN: {} ({})", e.what(), static_cast<int>(e.status))));
    }
    if (size != m) std::copy_n(impl.padded_logits.begin(), m * classes, logits.begin() + begin * classes);
  }
  return Ok();
}

Result<std::vector<std::string>> OnednnNet::Implementations(int n) {
  if (n < 1) return std::unexpected(Error::InvalidInput(fmt::format("a batch has at least 1 image, not {}", n)));
  omp_set_num_threads(1);  // as Run(): oneDNN may choose by thread count
  ASSIGN_OR_RETURN(auto plan, impl_->PlanFor(PlanSize(std::min<memory::dim>(n, kChunk))));
  return plan->implementations;
}

bool OnednnNet::int8() const { return !impl_->ranges.empty(); }

int OnednnNet::classes() const { return impl_->layers.back().outputs; }

}  // namespace iotinfer::model
