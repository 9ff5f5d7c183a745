#include "model/onednn_net.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <opencv2/dnn.hpp>
#include <vector>

#include "dataset/dataset.h"
#include "test_util.h"

namespace iotinfer::model {
namespace {

// The first n Fashion-MNIST test images as the model's input: float32 [n, 1, 28, 28], 0..255.
std::vector<float> TestImages(size_t n) {
  static const dataset::Dataset data =
      *dataset::LoadFashionMnist(dataset::kFashionMnistDefaultDir, dataset::Split::kTest);
  std::vector<float> input;
  for (size_t i = 0; i < n; ++i) {
    for (uint8_t pixel : data.image(i).pixels) input.push_back(pixel);
  }
  return input;
}

cv::Mat OpenCvLogits(cv::dnn::Net& net, std::vector<float>& input, int n) {
  net.setInput(cv::Mat({n, 1, 28, 28}, CV_32F, input.data()));
  return net.forward().clone();
}

// oneDNN runs the committed model with the weights OpenCV loaded, and computes what OpenCV
// computes, at every batch size (run padded to a power of two, or in chunks of 64) and again
// on reuse.
TEST(OnednnNetTest, ComputesOpenCvsLogitsForTheCommittedModel) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(iotinfer::testing::ModelPath());
  auto onednn = OnednnNet::FromOpenCv(net, 1, 28, 28);
  ASSERT_TRUE(onednn) << onednn.error().message();
  ASSERT_EQ((*onednn)->classes(), 10);
  for (int n : {1, 7, 64, 256, 7}) {
    std::vector<float> input = TestImages(n);
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
