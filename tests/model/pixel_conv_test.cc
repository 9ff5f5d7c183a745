#include "model/pixel_conv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string_view>
#include <vector>

#include "dataset/dataset.h"
#include "model/onednn_net.h"
#include "model/quantize.h"

namespace iotinfer::model {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

// What the int8 engine computed before PixelConvolution: oneDNN's float32 convolution with a
// ReLU, then QuantizeToNhwcU8. u8 NHWC.
std::vector<uint8_t> OneDnnBytes(const PixelConvolution::Shape& s, int64_t n, const std::vector<float>& input,
                                 const std::vector<float>& weights, const std::vector<float>& bias, float factor,
                                 int64_t out_rows, int64_t out_cols) {
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::dims src{n, 1, s.rows, s.cols}, wei{s.outputs, 1, s.kernel_rows, s.kernel_cols},
      dst{n, s.outputs, out_rows, out_cols};
  dnnl::post_ops relu;
  relu.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(relu);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
      memory::desc(src, memory::data_type::f32, Tag::nchw), memory::desc(wei, memory::data_type::f32, Tag::any),
      memory::desc({s.outputs}, memory::data_type::f32, Tag::a), memory::desc(dst, memory::data_type::f32, Tag::any),
      {s.stride_rows, s.stride_cols}, {s.pad_top, s.pad_left}, {s.pad_bottom, s.pad_right});
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);
  memory in(pd.src_desc(), engine, const_cast<float*>(input.data()));
  memory plain_weights({wei, memory::data_type::f32, Tag::oihw}, engine, const_cast<float*>(weights.data()));
  memory laid_out_weights(pd.weights_desc(), engine);
  dnnl::reorder(plain_weights, laid_out_weights).execute(stream, plain_weights, laid_out_weights);
  memory b({{s.outputs}, memory::data_type::f32, Tag::a}, engine, const_cast<float*>(bias.data()));
  memory out(pd.dst_desc(), engine);
  dnnl::convolution_forward(pd).execute(
      stream, {{DNNL_ARG_SRC, in}, {DNNL_ARG_WEIGHTS, laid_out_weights}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, out}});
  stream.wait();
  const auto runs = ChannelRunsOf(pd.dst_desc());
  EXPECT_TRUE(runs) << "oneDNN chose a layout QuantizeToNhwcU8 cannot read";
  std::vector<uint8_t> bytes(n * out_rows * out_cols * s.outputs);
  if (runs) QuantizeToNhwcU8(static_cast<const float*>(out.get_data_handle()), *runs, factor, bytes.data());
  return bytes;
}

// A convolution over a 28x28 image: kernel, strides {rows, cols}, padding {top, left, bottom,
// right} and output channels.
PixelConvolution::Shape ImageShape(int64_t kernel_rows, int64_t kernel_cols, std::array<int64_t, 2> strides,
                                   std::array<int64_t, 4> pads, int64_t outputs) {
  return {.rows = 28,
          .cols = 28,
          .kernel_rows = kernel_rows,
          .kernel_cols = kernel_cols,
          .stride_rows = strides[0],
          .stride_cols = strides[1],
          .pad_top = pads[0],
          .pad_left = pads[1],
          .pad_bottom = pads[2],
          .pad_right = pads[3],
          .outputs = outputs};
}

// The committed model's first convolution.
PixelConvolution::Shape ModelsFirst() { return ImageShape(5, 5, {2, 2}, {2, 2, 2, 2}, 32); }

// PixelConvolution replaces oneDNN's float32 first convolution and the quantization after it in
// the int8 engine on AVX2, whose calibrated recheck margins assume those bytes: it must give
// them, from windows inside the image and over its padding, for kernels unrolled (3, 5
// columns) or not. On AVX-512, oneDNN's own kernel may round its sums in another order.
TEST(PixelConvolutionTest, GivesOneDnnsBytes) {
  if (!CanQuantizeToNhwcU8()) GTEST_SKIP() << "no AVX2 here: the int8 engine uses oneDNN's kernel";
  const std::string_view isa = OnednnNet::Isa();
  const bool same_kernel = isa == "avx2" || isa == "avx2_vnni";
  const dataset::Dataset data = *dataset::LoadFashionMnist(dataset::kFashionMnistDefaultDir, dataset::Split::kTest);
  std::mt19937 random(11);
  const PixelConvolution::Shape shapes[] = {
      ModelsFirst(),
      ImageShape(3, 3, {1, 1}, {1, 1, 1, 1}, 16),
      // Uneven strides and padding, a kernel no pass unrolls, 48 channels: 3 groups of 16.
      ImageShape(4, 7, {1, 3}, {0, 3, 2, 1}, 48),
  };
  for (const PixelConvolution::Shape& s : shapes) {
    // Enough images that sums rounded in another order would flip some byte.
    const int64_t taps = s.kernel_rows * s.kernel_cols, n = 300;
    std::normal_distribution<float> weight(0.f, 3.f / (255.f * std::sqrt(static_cast<float>(taps))));
    std::vector<float> weights(s.outputs * taps), bias(s.outputs), input;
    for (float& w : weights) w = weight(random);
    for (float& b : bias) b = weight(random) * 60.f;
    for (int64_t i = 0; i < n; ++i) {
      for (uint8_t pixel : data.image(i * 13).pixels) input.push_back(pixel);
    }
    const float factor = 255.f / 2.f;  // some outputs saturate at 255
    auto convolution = PixelConvolution::Make(s, weights, bias, factor);
    ASSERT_TRUE(convolution);
    const int64_t out_rows = convolution->out_rows(), out_cols = convolution->out_cols();
    std::vector<uint8_t> got(n * out_rows * out_cols * s.outputs);
    convolution->Run(input.data(), n, got.data());
    const std::vector<uint8_t> want = OneDnnBytes(s, n, input, weights, bias, factor, out_rows, out_cols);
    size_t differ = 0, zeros = 0, full = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      differ += got[i] != want[i];
      ASSERT_LE(std::abs(got[i] - want[i]), 1) << "kernel " << s.kernel_rows << "x" << s.kernel_cols << ", byte " << i;
      zeros += want[i] == 0;
      full += want[i] == 255;
    }
    if (same_kernel) {
      EXPECT_EQ(differ, 0u) << "kernel " << s.kernel_rows << "x" << s.kernel_cols;
    }
    EXPECT_LT(differ, got.size() / 1000) << "kernel " << s.kernel_rows << "x" << s.kernel_cols;
    // The ReLU's zeros, the clamp and values between all occur.
    EXPECT_GT(zeros, 0u);
    EXPECT_GT(full, 0u);
    EXPECT_GT(got.size() - zeros - full, got.size() / 4);
  }
}

TEST(PixelConvolutionTest, RefusesWhatItCannotRun) {
  const PixelConvolution::Shape model = ModelsFirst();
  const std::vector<float> weights(32 * 25, 0.01f), bias(32, 0.f);
  if (!CanQuantizeToNhwcU8()) {
    EXPECT_FALSE(PixelConvolution::Make(model, weights, bias, 1.f));
    return;
  }
  EXPECT_TRUE(PixelConvolution::Make(model, weights, bias, 1.f));
  PixelConvolution::Shape odd = model;
  odd.outputs = 24;  // no multiple of 16
  EXPECT_FALSE(PixelConvolution::Make(odd, std::vector<float>(24 * 25), std::vector<float>(24), 1.f));
  PixelConvolution::Shape empty = model;
  empty.kernel_rows = 40;  // larger than the padded image: no output
  EXPECT_FALSE(PixelConvolution::Make(empty, std::vector<float>(32 * 40 * 5), bias, 1.f));
  EXPECT_FALSE(PixelConvolution::Make(model, std::vector<float>(31 * 25), bias, 1.f));  // too few weights
}

}  // namespace
}  // namespace iotinfer::model
