#include "model/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace iotinfer::model {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

// The quantization replaces oneDNN's reorder between the float32 first convolution and the
// int8 layers, so it must give the same bytes, ties and saturation included, from every
// layout that convolution may output.
TEST(QuantizeTest, GivesOneDnnsReorderBytesFromEachLayout) {
  if (!CanQuantizeToNhwcU8()) GTEST_SKIP() << "no AVX2 here: the classifier uses oneDNN's reorder";
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const memory::dims dims{3, 32, 5, 7};
  const float factor = 73.848488f;
  std::mt19937 random(7);
  std::uniform_real_distribution<float> value(-0.5f, 4.f);
  std::vector<float> plain(3 * 32 * 5 * 7);
  for (float& v : plain) v = value(random);
  // Exact ties at .5 after scaling (round to even), and values far past 255 and below 0.
  plain[0] = 0.5f / factor;
  plain[1] = 2.5f / factor;
  plain[2] = 1e6f;
  plain[3] = -1e6f;
  memory source({dims, memory::data_type::f32, Tag::nchw}, engine);
  std::memcpy(source.get_data_handle(), plain.data(), plain.size() * sizeof(float));
  for (Tag tag : {Tag::nhwc, Tag::nChw8c, Tag::nChw16c}) {
    memory laid_out({dims, memory::data_type::f32, tag}, engine);
    dnnl::reorder(source, laid_out).execute(stream, source, laid_out);
    memory expected({dims, memory::data_type::u8, Tag::nhwc}, engine);
    dnnl::primitive_attr attr;
    attr.set_output_scales(0, {factor});
    dnnl::reorder(dnnl::reorder::primitive_desc(laid_out, expected, attr)).execute(stream, laid_out, expected);
    stream.wait();
    const auto runs = ChannelRunsOf(laid_out.get_desc());
    ASSERT_TRUE(runs) << static_cast<int>(tag);
    std::vector<uint8_t> got(plain.size());
    QuantizeToNhwcU8(static_cast<const float*>(laid_out.get_data_handle()), *runs, factor, got.data());
    const auto* want = static_cast<const uint8_t*>(expected.get_data_handle());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << "layout " << static_cast<int>(tag) << " " << i;
  }
}

// Layouts whose channels do not come in runs of 8 are left to oneDNN.
TEST(QuantizeTest, RefusesLayoutsItCannotRead) {
  EXPECT_FALSE(ChannelRunsOf(memory::desc({2, 32, 5, 5}, memory::data_type::f32, Tag::nchw)));
  EXPECT_FALSE(ChannelRunsOf(memory::desc({2, 12, 5, 5}, memory::data_type::f32, Tag::nhwc)));
  EXPECT_FALSE(ChannelRunsOf(memory::desc({2, 24, 5, 5}, memory::data_type::f32, Tag::nChw16c)));
  EXPECT_FALSE(ChannelRunsOf(memory::desc({2, 32, 5, 5}, memory::data_type::u8, Tag::nhwc)));
  EXPECT_TRUE(ChannelRunsOf(memory::desc({2, 24, 5, 5}, memory::data_type::f32, Tag::nChw8c)));
}

}  // namespace
}  // namespace iotinfer::model
