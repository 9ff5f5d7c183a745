#include "model/onednn_net.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <opencv2/dnn.hpp>
#include <string_view>
#include <vector>

#include "dataset/dataset.h"
#include "test_util.h"

namespace iotinfer::model {
namespace {

// The first n Fashion-MNIST images of `split` as the model's input: float32 [n, 1, 28, 28],
// 0..255.
std::vector<float> Images(size_t n, dataset::Split split = dataset::Split::kTest) {
  const dataset::Dataset data = *dataset::LoadFashionMnist(dataset::kFashionMnistDefaultDir, split);
  std::vector<float> input;
  for (size_t i = 0; i < std::min(n, data.size()); ++i) {
    for (uint8_t pixel : data.image(i).pixels) input.push_back(pixel);
  }
  return input;
}

std::vector<int> TopClasses(const std::vector<float>& logits, int classes) {
  std::vector<int> top;
  for (size_t i = 0; i < logits.size(); i += classes) {
    top.push_back(
        static_cast<int>(std::max_element(logits.begin() + i, logits.begin() + i + classes) - (logits.begin() + i)));
  }
  return top;
}

cv::Mat OpenCvLogits(cv::dnn::Net& net, std::vector<float>& input, int n) {
  net.setInput(cv::Mat({n, 1, 28, 28}, CV_32F, input.data()));
  return net.forward().clone();
}

// oneDNN runs the committed model with the weights OpenCV loaded, and computes what OpenCV
// computes, at every batch size (run at its own size, padded to a power of two, or in chunks)
// and again on reuse.
TEST(OnednnNetTest, ComputesOpenCvsLogitsForTheCommittedModel) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(iotinfer::testing::ModelPath());
  auto onednn = OnednnNet::FromOpenCv(net, 1, 28, 28);
  ASSERT_TRUE(onednn) << onednn.error().message();
  ASSERT_EQ((*onednn)->classes(), 10);
  for (int n : {1, 7, 12, 64, 256, 7}) {
    std::vector<float> input = Images(n);
    const cv::Mat expected = OpenCvLogits(net, input, n);
    std::vector<float> logits(n * 10);
    ASSERT_TRUE((*onednn)->Forward(input, logits)) << n;
    float worst = 0.f;
    int same_top = 0;
    for (int i = 0; i < n; ++i) {
      const float* want = expected.ptr<float>(i);
      const float* got = logits.data() + i * 10;
      for (int c = 0; c < 10; ++c) worst = std::max(worst, std::abs(want[c] - got[c]) / (1.f + std::abs(want[c])));
      same_top += std::max_element(want, want + 10) - want == std::max_element(got, got + 10) - got;
    }
    EXPECT_LT(worst, 1e-4f) << "batch " << n;
    EXPECT_EQ(same_top, n) << "batch " << n;
  }
}

// Calibrated on training images, int8 changes few top classes on the test set: 18 of 10,000
// when this was written (the first convolution in int8 too made it 38). A wrongly scaled bias
// or activation changes thousands.
TEST(OnednnNetTest, Int8CalibratedOnTrainingImagesAgreesWithFloat32) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(iotinfer::testing::ModelPath());
  auto f32 = OnednnNet::FromOpenCv(net, 1, 28, 28);
  ASSERT_TRUE(f32);
  auto ranges = (*f32)->ActivationRanges(Images(20000, dataset::Split::kTrain));
  ASSERT_TRUE(ranges) << ranges.error().message();
  ASSERT_EQ(ranges->size(), 3u);
  auto int8 = OnednnNet::FromOpenCv(net, 1, 28, 28, *ranges);
  ASSERT_TRUE(int8) << int8.error().message();
  EXPECT_TRUE((*int8)->int8());
  EXPECT_FALSE((*int8)->ActivationRanges(Images(1)));
  const std::vector<float> input = Images(10000);
  std::vector<float> want(10000 * 10), got(10000 * 10);
  ASSERT_TRUE((*f32)->Forward(input, want));
  ASSERT_TRUE((*int8)->Forward(input, got));
  const std::vector<int> a = TopClasses(want, 10), b = TopClasses(got, 10);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_GE(same, 9970);
  // Batch sizes run as padded chunks give the same logits as one large batch.
  std::vector<float> small(7 * 10);
  ASSERT_TRUE((*int8)->Forward({input.data(), 7 * 784}, small));
  for (size_t i = 0; i < small.size(); ++i) ASSERT_NEAR(small[i], got[i], 0.05f) << i;
}

// Every step runs on a JIT kernel: a layout oneDNN has no fast kernel for (float32 NHWC on
// AVX2, u8 nChw8c) falls to a reference one hundreds of times slower. The layers hand their
// outputs on in the layout the next one takes: no reorder but the int8 engine's quantization,
// which on AVX2 is done with the first convolution by PixelConvolution. On AVX-512 without AMX
// the direct convolutions run, not brgconv (docs/bench-log.md, 2026-12-05). The ctest
// model.avx2 runs this as on a CPU without AVX-512.
TEST(OnednnNetTest, RunsOnJitKernelsWithoutReordersBetweenLayers) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(iotinfer::testing::ModelPath());
  auto f32 = OnednnNet::FromOpenCv(net, 1, 28, 28);
  auto int8 = OnednnNet::FromOpenCv(net, 1, 28, 28, std::vector<float>{3.45f, 2.14f, 4.28f});
  ASSERT_TRUE(f32 && int8);
  const std::string_view isa = OnednnNet::Isa();
  const bool avx512_without_amx = isa == "avx512_core" || isa == "avx512_core_vnni" || isa == "avx512_core_bf16";
  for (OnednnNet* onednn : {f32->get(), int8->get()}) {
    for (int n : {1, 7, 64}) {
      auto names = onednn->Implementations(n);
      ASSERT_TRUE(names) << names.error().message();
      int reorders = 0;
      for (std::string_view name : *names) {
        if (name.starts_with("reorder ")) {
          ++reorders;
          name.remove_prefix(std::string_view("reorder ").size());
        }
        EXPECT_FALSE(name.starts_with("ref")) << isa << ", batch " << n << ": " << name;
        if (avx512_without_amx) {
          EXPECT_FALSE(name.starts_with("brg")) << isa << ", batch " << n << ": " << name;
        }
      }
      const bool avx2 = isa == "avx2" || isa == "avx2_vnni";
      if (isa != "other") {
        EXPECT_EQ(reorders, onednn->int8() && !avx2 ? 1 : 0) << isa << ", batch " << n;
      }
      if (onednn->int8() && avx2) {
        EXPECT_EQ(names->front(), "conv+reorder iotinfer:avx2") << "batch " << n;
      }
    }
  }
  EXPECT_FALSE((*f32)->Implementations(0));
}

// Calibration is computed from what the net outputs, so it must be all of it, and usable.
TEST(OnednnNetTest, Int8RangesAreCheckedAgainstTheNetwork) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(iotinfer::testing::ModelPath());
  for (const std::vector<float>& ranges :
       std::vector<std::vector<float>>{{1.f, 2.f}, {1.f, 0.f, 2.f}, {1.f, NAN, 2.f}}) {
    auto int8 = OnednnNet::FromOpenCv(net, 1, 28, 28, ranges);
    ASSERT_FALSE(int8);
    EXPECT_EQ(int8.error().code(), Error::Code::kInvalidInput);
  }
  auto six_bits = OnednnNet::FromOpenCv(net, 1, 28, 28, std::vector<float>{1.f, 2.f, 3.f}, 6);
  ASSERT_FALSE(six_bits);
  EXPECT_THAT(six_bits.error().message(), ::testing::HasSubstr("7 or 8 bits, not 6"));
}

TEST(OnednnNetTest, InputThatIsNoWholeNumberOfImagesIsRejected) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(iotinfer::testing::ModelPath());
  auto onednn = OnednnNet::FromOpenCv(net, 1, 28, 28);
  ASSERT_TRUE(onednn);
  std::vector<float> input(28 * 28 + 5), logits(10);
  auto status = (*onednn)->Forward(input, logits);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), Error::Code::kInvalidInput);
}

// A layer it has no counterpart for is named, rather than run wrongly.
TEST(OnednnNetTest, AnUnsupportedLayerIsNamed) {
  cv::dnn::Net net;
  cv::dnn::LayerParams lrn;
  lrn.name = "norm1";
  lrn.type = "LRN";
  net.addLayerToPrev(lrn.name, lrn.type, lrn);
  auto onednn = OnednnNet::FromOpenCv(net, 1, 28, 28);
  ASSERT_FALSE(onednn);
  EXPECT_EQ(onednn.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(onednn.error().message(), ::testing::HasSubstr("norm1 (LRN)"));
}

}  // namespace
}  // namespace iotinfer::model
