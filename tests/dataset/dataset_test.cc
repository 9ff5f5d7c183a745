#include "dataset/dataset.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace iotinfer::dataset {
namespace {

using iotinfer::testing::TempDir;
using ::testing::HasSubstr;

void WriteGzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<uint8_t> IdxFile(uint32_t magic, std::vector<uint32_t> dims, size_t payload) {
  std::vector<uint8_t> out;
  auto be32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  };
  be32(magic);
  for (uint32_t d : dims) be32(d);
  for (size_t i = 0; i < payload; ++i) out.push_back(static_cast<uint8_t>(i % 10));
  return out;
}

// A tiny, well-formed Fashion-MNIST test split of `n` 2x2 images, in `dir`.
void WriteTinyFashionMnist(const TempDir& dir, uint32_t n) {
  WriteGzip(dir.file("t10k-images-idx3-ubyte.gz"), IdxFile(0x803, {n, 2, 2}, n * 4));
  WriteGzip(dir.file("t10k-labels-idx1-ubyte.gz"), IdxFile(0x801, {n}, n));
}

TEST(FashionMnistTest, LoadsDebiansDataset) {
  auto test = LoadFashionMnist(kFashionMnistDefaultDir, Split::kTest);
  ASSERT_OK(test);
  EXPECT_EQ(test->size(), 10000u);
  EXPECT_EQ(test->rows, 28);
  EXPECT_EQ(test->cols, 28);
  EXPECT_EQ(test->channels, 1);
  EXPECT_EQ(test->pixels.size(), 10000u * 784);
  EXPECT_EQ(test->class_names[test->labels[0]], "Ankle boot");  // the well-known first test image
  std::vector<int> per_class(10);
  for (uint8_t label : test->labels) per_class[label]++;
  for (int count : per_class) EXPECT_EQ(count, 1000);

  auto train = LoadFashionMnist(kFashionMnistDefaultDir, Split::kTrain);
  ASSERT_OK(train);
  EXPECT_EQ(train->size(), 60000u);
}

TEST(FashionMnistTest, ReadsAWellFormedFile) {
  TempDir dir;
  WriteTinyFashionMnist(dir, 5);
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_OK(data);
  EXPECT_EQ(data->size(), 5u);
  EXPECT_EQ(data->rows, 2);
  EXPECT_EQ(data->image(1).pixels[0], 4);
}

TEST(FashionMnistTest, MissingFileIsNamed) {
  TempDir dir;
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_EQ(data.error().code(), Error::Code::kNotFound);
  EXPECT_THAT(data.error().message(), HasSubstr("t10k-images-idx3-ubyte.gz: no such file"));
}

TEST(FashionMnistTest, PayloadShorterThanTheHeaderPromisesIsTruncated) {
  TempDir dir;
  WriteTinyFashionMnist(dir, 5);
  WriteGzip(dir.file("t10k-images-idx3-ubyte.gz"), IdxFile(0x803, {5, 2, 2}, 19));
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(),
              HasSubstr("t10k-images-idx3-ubyte.gz: 19 bytes of data, header promises 20 (truncated)"));
}

TEST(FashionMnistTest, CutGzipStreamIsTruncated) {
  TempDir dir;
  WriteTinyFashionMnist(dir, 200);
  std::string path = dir.file("t10k-images-idx3-ubyte.gz");
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("t10k-images-idx3-ubyte.gz: "));
  EXPECT_THAT(data.error().message(), ::testing::AnyOf(HasSubstr("truncated"), HasSubstr("corrupt")));
}

TEST(FashionMnistTest, WrongMagicIsNamed) {
  TempDir dir;
  WriteTinyFashionMnist(dir, 5);
  WriteGzip(dir.file("t10k-images-idx3-ubyte.gz"), IdxFile(0x801, {5}, 5));
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("bad idx magic 0x00000801, expected 0x00000803"));
}

TEST(FashionMnistTest, ImageAndLabelCountsMustAgree) {
  TempDir dir;
  WriteTinyFashionMnist(dir, 5);
  WriteGzip(dir.file("t10k-labels-idx1-ubyte.gz"), IdxFile(0x801, {4}, 4));
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("has 5 images but"));
}

TEST(FashionMnistTest, LabelsOutOfRangeAreRejected) {
  TempDir dir;
  WriteTinyFashionMnist(dir, 5);
  auto labels = IdxFile(0x801, {5}, 5);
  labels.back() = 10;
  WriteGzip(dir.file("t10k-labels-idx1-ubyte.gz"), labels);
  auto data = LoadFashionMnist(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("label 10 at record 4"));
}

// CIFAR-10 records: a label byte, then the red, green and blue 32x32 planes.
void WriteCifar(const std::string& path, const std::vector<uint8_t>& labels, size_t trailing_bytes = 0) {
  std::ofstream out(path, std::ios::binary);
  for (size_t r = 0; r < labels.size(); ++r) {
    out.put(static_cast<char>(labels[r]));
    for (int c = 0; c < 3; ++c) {
      for (int p = 0; p < 1024; ++p) out.put(static_cast<char>(r * 50 + c * 10 + (p % 7)));
    }
  }
  for (size_t i = 0; i < trailing_bytes; ++i) out.put(0);
}

// The first 20 Fashion-MNIST test images.
Dataset FirstTestImages() {
  Dataset data = *LoadFashionMnist(kFashionMnistDefaultDir, Split::kTest);
  data.labels.resize(20);
  data.pixels.resize(20 * data.image_bytes());
  return data;
}

TEST(WriteFashionMnistTest, WrittenFilesLoadBackForEitherSplit) {
  TempDir dir;
  const Dataset data = FirstTestImages();
  ASSERT_OK(WriteFashionMnist(data, dir.file("new"), Split::kTrain));
  auto loaded = LoadFashionMnist(dir.file("new"), Split::kTrain);
  ASSERT_OK(loaded);
  EXPECT_EQ(loaded->rows, 28);
  EXPECT_EQ(loaded->cols, 28);
  EXPECT_EQ(loaded->pixels, data.pixels);
  EXPECT_EQ(loaded->labels, data.labels);
  EXPECT_FALSE(LoadFashionMnist(dir.file("new"), Split::kTest));  // only the split asked for
  ASSERT_OK(WriteFashionMnist(data, dir.file("new"), Split::kTest));
  ASSERT_OK(LoadFashionMnist(dir.file("new"), Split::kTest));
  EXPECT_FALSE(std::filesystem::exists(dir.file("new/t10k-images-idx3-ubyte.gz.tmp")));
}

TEST(WriteFashionMnistTest, RefusesWhatIdxCannotHoldAndUnwritableDirectories) {
  TempDir dir;
  Dataset colour{
      .name = "cifar10", .rows = 2, .cols = 2, .channels = 3, .pixels = std::vector<uint8_t>(12), .labels = {1}};
  auto refused = WriteFashionMnist(colour, dir.path().string(), Split::kTest);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(refused.error().message(), HasSubstr("3 channels"));

  Dataset short_pixels = FirstTestImages();
  short_pixels.pixels.pop_back();
  EXPECT_FALSE(WriteFashionMnist(short_pixels, dir.path().string(), Split::kTest));

  std::ofstream(dir.file("file")) << "not a directory";
  auto unwritable = WriteFashionMnist(FirstTestImages(), dir.file("file"), Split::kTest);
  ASSERT_FALSE(unwritable);
  EXPECT_EQ(unwritable.error().code(), Error::Code::kIo);
  EXPECT_THAT(unwritable.error().message(), HasSubstr(dir.file("file")));
}

TEST(Cifar10Test, ReadsRecordsAndInterleavesChannels) {
  TempDir dir;
  WriteCifar(dir.file("test_batch.bin"), {0, 5, 9});
  auto data = LoadCifar10(dir.path().string(), Split::kTest);
  ASSERT_OK(data);
  EXPECT_EQ(data->size(), 3u);
  EXPECT_EQ(data->rows, 32);
  EXPECT_EQ(data->channels, 3);
  EXPECT_EQ(data->labels, (std::vector<uint8_t>{0, 5, 9}));
  EXPECT_EQ(data->class_names[9], "truck");
  ImageView second = data->image(1);
  // Pixel 3 of record 1: R = 50 + 0 + 3, G = 50 + 10 + 3, B = 50 + 20 + 3.
  EXPECT_EQ(second.pixels[3 * 3 + 0], 53);
  EXPECT_EQ(second.pixels[3 * 3 + 1], 63);
  EXPECT_EQ(second.pixels[3 * 3 + 2], 73);
}

TEST(Cifar10Test, TrainSplitReadsFiveBatchesAndMetaNames) {
  TempDir dir;
  for (int i = 1; i <= 5; ++i) WriteCifar(dir.file(fmt::format("data_batch_{}.bin", i)), {static_cast<uint8_t>(i)});
  std::ofstream(dir.file("batches.meta.txt")) << "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
  auto data = LoadCifar10(dir.path().string(), Split::kTrain);
  ASSERT_OK(data);
  EXPECT_EQ(data->labels, (std::vector<uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(data->class_names[0], "a");
}

TEST(Cifar10Test, PartialRecordIsRejectedWithTheFileName) {
  TempDir dir;
  WriteCifar(dir.file("test_batch.bin"), {1, 2}, 100);
  auto data = LoadCifar10(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("test_batch.bin: 6246 bytes is not a whole number of 3073-byte"));
}

TEST(Cifar10Test, LabelAboveNineIsRejected) {
  TempDir dir;
  WriteCifar(dir.file("test_batch.bin"), {1, 12});
  auto data = LoadCifar10(dir.path().string(), Split::kTest);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("label 12 at record 1"));
}

TEST(Cifar10Test, MissingBatchIsNamed) {
  TempDir dir;
  WriteCifar(dir.file("data_batch_1.bin"), {1});
  auto data = LoadCifar10(dir.path().string(), Split::kTrain);
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("data_batch_2.bin: no such file"));
}

TEST(DatasetTest, UnknownNamesAndSplitsAreRejected) {
  auto data = Load({.name = "mnist"});
  ASSERT_FALSE(data);
  EXPECT_THAT(data.error().message(), HasSubstr("unknown dataset 'mnist'"));
  EXPECT_FALSE(ParseSplit("validation"));
  EXPECT_EQ(ParseSplit("train").value(), Split::kTrain);
}

}  // namespace
}  // namespace iotinfer::dataset
