#include "model/onednn_net.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <opencv2/dnn/all_layers.hpp>
#include <unordered_map>
#include <vector>

namespace iotinfer::model {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;
// Images per primitive run: oneDNN is at its best from about 64 on this model (BENCHMARKS.md).
constexpr memory::dim kChunk = 64;

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

// The primitives for one batch size, with their memories.
struct Plan {
  memory input;   // NCHW f32, the caller's buffer
  memory output;  // [n, classes] f32, the caller's buffer
  std::vector<dnnl::primitive> steps;
  std::vector<std::unordered_map<int, memory>> args;
};

}  // namespace

struct OnednnNet::Impl {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  Dims input_shape;  // {C, H, W}
  std::vector<Layer> layers;
  // Weights in the layouts the primitives chose, per batch size (oneDNN may pick others for
  // other sizes); plans are built on first use of a batch size and kept.
  std::map<memory::dim, Plan> plans;
  std::vector<float> padded_input, padded_logits;  // a last chunk rounded up to its plan's size

  // A user-layout copy of an OpenCV blob (float32, contiguous) as a oneDNN memory.
  memory Wrap(const cv::Mat& blob, const Dims& dims, Tag tag) const {
    memory m({dims, kF32, tag}, engine);
    std::memcpy(m.get_data_handle(), blob.ptr<float>(), blob.total() * sizeof(float));
    return m;
  }

  // `from` in the layout `to` describes (no step when it already is).
  memory Reordered(Plan& plan, const memory& from, const memory::desc& to) {
    if (from.get_desc() == to) return from;
    memory result(to, engine);
    plan.steps.push_back(dnnl::reorder(from, result));
    plan.args.push_back({{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, result}});
    return result;
  }

  // Weights reordered once, at plan time, into the layout the primitive asked for.
  memory Weights(memory plain, const memory::desc& wanted) {
    if (plain.get_desc() == wanted) return plain;
    memory result(wanted, engine);
    dnnl::reorder(plain, result).execute(stream, plain, result);
    stream.wait();
    return result;
  }

  memory Bias(const Layer& l) const {
    memory bias({{l.outputs}, kF32, Tag::a}, engine);
    auto* out = static_cast<float*>(bias.get_data_handle());
    for (int i = 0; i < l.outputs; ++i) out[i] = l.bias.empty() ? 0.f : l.bias.ptr<float>()[i];
    return bias;
  }

  Plan Build(memory::dim n) {
    Plan plan;
    plan.input = memory({{n, input_shape[0], input_shape[1], input_shape[2]}, kF32, Tag::nchw}, engine, nullptr);
    memory src = plan.input;
    for (const Layer& l : layers) {
      const Dims src_dims{n, l.src[0], l.src[1], l.src[2]};
      const memory bias = Bias(l);
      if (l.dense) {
        // The weights' [out, C*H*W] rows are CHW-flattened: as OIHW over the 4-D source they
        // mean the same, and the primitive takes the source in any layout.
        const Dims weight_dims{l.outputs, l.src[0], l.src[1], l.src[2]};
        plan.output = memory({{n, l.outputs}, kF32, Tag::nc}, engine, nullptr);
        dnnl::inner_product_forward::primitive_desc pd({dnnl::prop_kind::forward_inference,
                                                        {src_dims, kF32, Tag::any},
                                                        {weight_dims, kF32, Tag::any},
                                                        bias.get_desc(),
                                                        plan.output.get_desc()},
                                                       engine);
        memory in = Reordered(plan, src, pd.src_desc());
        plan.steps.push_back(dnnl::inner_product_forward(pd));
        plan.args.push_back({{DNNL_ARG_SRC, in},
                             {DNNL_ARG_WEIGHTS, Weights(Wrap(l.weights, weight_dims, Tag::oihw), pd.weights_desc())},
                             {DNNL_ARG_BIAS, bias},
                             {DNNL_ARG_DST, plan.output}});
        break;
      }
      const Dims weight_dims{l.outputs, l.src[0], l.kernel[0], l.kernel[1]};
      const Dims out = ConvolutionOutput(l);
      const Dims dst_dims{n, out[0], out[1], out[2]};
      dnnl::post_ops post;
      if (l.relu) post.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(post);
      dnnl::convolution_forward::primitive_desc pd({dnnl::prop_kind::forward_inference,
                                                    dnnl::algorithm::convolution_direct,
                                                    {src_dims, kF32, Tag::any},
                                                    {weight_dims, kF32, Tag::any},
                                                    bias.get_desc(),
                                                    {dst_dims, kF32, Tag::any},
                                                    l.strides,
                                                    l.pads_begin,
                                                    l.pads_end},
                                                   attr, engine);
      memory in = Reordered(plan, src, pd.src_desc());
      memory dst(pd.dst_desc(), engine);
      plan.steps.push_back(dnnl::convolution_forward(pd));
      plan.args.push_back({{DNNL_ARG_SRC, in},
                           {DNNL_ARG_WEIGHTS, Weights(Wrap(l.weights, weight_dims, Tag::oihw), pd.weights_desc())},
                           {DNNL_ARG_BIAS, bias},
                           {DNNL_ARG_DST, dst}});
      src = dst;
    }
    return plan;
  }
};

OnednnNet::OnednnNet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnNet::~OnednnNet() = default;

Result<std::unique_ptr<OnednnNet>> OnednnNet::FromOpenCv(cv::dnn::Net& net, int channels, int rows, int cols) {
  auto impl = std::make_unique<Impl>();
  impl->input_shape = {channels, rows, cols};
  ASSIGN_OR_RETURN(impl->layers, ReadLayers(net, impl->input_shape));
  return std::unique_ptr<OnednnNet>(new OnednnNet(std::move(impl)));
}

Status OnednnNet::Forward(std::span<const float> input, std::span<float> logits) {
  Impl& impl = *impl_;
  const memory::dim image = impl.input_shape[0] * impl.input_shape[1] * impl.input_shape[2];
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
  // runs in chunks of kChunk, and a last, smaller chunk as the next power of two, padded. So
  // at most 1 + log2(kChunk) plans, whatever sizes a dynamic batcher sends.
  for (memory::dim begin = 0; begin < n; begin += kChunk) {
    const memory::dim m = std::min<memory::dim>(kChunk, n - begin);
    memory::dim size = 1;
    while (size < m) size *= 2;
    const float* in = input.data() + begin * image;
    float* out = logits.data() + begin * classes;
    if (size != m) {
      impl.padded_input.assign(static_cast<size_t>(size * image), 0.f);
      std::copy(in, in + m * image, impl.padded_input.begin());
      impl.padded_logits.resize(static_cast<size_t>(size * classes));
      in = impl.padded_input.data();
      out = impl.padded_logits.data();
    }
    auto [it, added] = impl.plans.try_emplace(size);
    try {
      if (added) it->second = impl.Build(size);
      Plan& plan = it->second;
      plan.input.set_data_handle(const_cast<float*>(in));
      plan.output.set_data_handle(out);
      for (size_t i = 0; i < plan.steps.size(); ++i) plan.steps[i].execute(impl.stream, plan.args[i]);
      impl.stream.wait();
    } catch (const dnnl::error& e) {
      if (added) impl.plans.erase(it);
      return std::unexpected(Error::Internal(fmt::format("oneDNN: {} ({})", e.what(), static_cast<int>(e.status))));
    }
    if (size != m) std::copy_n(impl.padded_logits.begin(), m * classes, logits.begin() + begin * classes);
  }
  return Ok();
}

int OnednnNet::classes() const { return impl_->layers.back().outputs; }

}  // namespace iotinfer::model
