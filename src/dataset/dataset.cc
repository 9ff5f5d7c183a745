#include "dataset/dataset.h"

#include <fmt/format.h>
#include <zlib.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/labels.h"

namespace iotinfer::dataset {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;
constexpr size_t kCifarSide = 32;
constexpr size_t kCifarRecordBytes = 1 + 3 * kCifarSide * kCifarSide;

Result<std::vector<uint8_t>> ReadGzip(const std::string& path) {
  if (!fs::exists(path)) return std::unexpected(Error::NotFound(fmt::format("{}: no such file", path)));
  std::unique_ptr<gzFile_s, decltype(&gzclose)> file(gzopen(path.c_str(), "rb"), &gzclose);
  if (!file) return std::unexpected(Error::Io(fmt::format("{}: cannot open", path)));
  gzbuffer(file.get(), 1 << 18);
  std::vector<uint8_t> data;
  std::array<uint8_t, 1 << 16> chunk;
  for (;;) {
    int n = gzread(file.get(), chunk.data(), chunk.size());
    if (n < 0) {
      int code = 0;
      return std::unexpected(
          Error::InvalidInput(fmt::format("{}: corrupt gzip data ({})", path, gzerror(file.get(), &code))));
    }
    if (n == 0) break;
    data.insert(data.end(), chunk.begin(), chunk.begin() + n);
  }
  // gzread stops quietly at a truncated stream; only the end-of-stream flag tells.
  if (!gzeof(file.get())) return std::unexpected(Error::InvalidInput(fmt::format("{}: truncated gzip stream", path)));
  return data;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Returns the dimensions of an idx file and checks that the payload holds exactly that many bytes.
Result<std::vector<uint32_t>> ParseIdxHeader(const std::string& path, const std::vector<uint8_t>& data,
                                             uint32_t magic) {
  const size_t ndim = magic & 0xff;
  const size_t header = 4 + 4 * ndim;
  if (data.size() >= 4) {
    if (uint32_t got = BigEndian32(data.data()); got != magic) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("{}: bad idx magic {:#010x}, expected {:#010x}", path, got, magic)));
    }
  }
  if (data.size() < header)
    return std::unexpected(Error::InvalidInput(fmt::format("{}: truncated idx header ({} bytes)", path, data.size())));
  std::vector<uint32_t> dims;
  size_t expected = 1;
  for (size_t i = 0; i < ndim; ++i) {
    dims.push_back(BigEndian32(data.data() + 4 + 4 * i));
    expected *= dims.back();
  }
  if (data.size() - header != expected) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("{}: {} bytes of data, header promises {}{}", path, data.size() - header,
                                        expected, data.size() - header < expected ? " (truncated)" : "")));
  }
  return dims;
}

Status CheckLabels(const std::string& path, std::span<const uint8_t> labels, size_t classes) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= classes) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("{}: label {} at record {} is not below {}", path, labels[i], i, classes)));
    }
  }
  return Ok();
}

std::vector<std::string> ReadCifarClassNames(const std::string& dir) {
  std::vector<std::string> names;
  std::ifstream meta(fs::path(dir) / "batches.meta.txt");
  for (std::string line; std::getline(meta, line);) {
    if (!line.empty()) names.push_back(line);
  }
  if (names.size() != std::size(kCifar10Classes)) return ClassNames(kCifar10Classes);
  return names;
}

}  // namespace

Result<Dataset> LoadFashionMnist(const std::string& dir, Split split) {
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  const std::string images_path = (fs::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string();
  const std::string labels_path = (fs::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string();

  ASSIGN_OR_RETURN(std::vector<uint8_t> images, ReadGzip(images_path));
  ASSIGN_OR_RETURN(auto image_dims, ParseIdxHeader(images_path, images, kIdxImagesMagic));
  ASSIGN_OR_RETURN(std::vector<uint8_t> labels, ReadGzip(labels_path));
  ASSIGN_OR_RETURN(auto label_dims, ParseIdxHeader(labels_path, labels, kIdxLabelsMagic));
  if (image_dims[0] != label_dims[0]) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("{} has {} images but {} has {} labels", images_path, image_dims[0], labels_path, label_dims[0])));
  }
  Dataset out;
  out.name = "fashion-mnist";
  out.class_names = ClassNames(kFashionMnistClasses);
  out.rows = static_cast<int>(image_dims[1]);
  out.cols = static_cast<int>(image_dims[2]);
  out.channels = 1;
  out.pixels.assign(images.begin() + 16, images.end());
  out.labels.assign(labels.begin() + 8, labels.end());
  TRY(CheckLabels(labels_path, out.labels, out.class_names.size()));
  return out;
}

Status AppendCifar10File(const std::string& path, Dataset& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(Error::NotFound(fmt::format("{}: no such file", path)));
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.empty() || data.size() % kCifarRecordBytes != 0) {
    return std::unexpected(Error::InvalidInput(fmt::format(
        "{}: {} bytes is not a whole number of {}-byte CIFAR-10 records", path, data.size(), kCifarRecordBytes)));
  }
  const size_t records = data.size() / kCifarRecordBytes;
  const size_t plane = kCifarSide * kCifarSide;
  const size_t first = out.size();
  out.labels.resize(first + records);
  out.pixels.resize((first + records) * 3 * plane);
  for (size_t r = 0; r < records; ++r) {
    const uint8_t* record = data.data() + r * kCifarRecordBytes;
    if (record[0] >= 10) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("{}: label {} at record {} is not below 10", path, record[0], r)));
    }
    out.labels[first + r] = record[0];
    // Planar RGB on disk, interleaved in memory.
    uint8_t* dst = out.pixels.data() + (first + r) * 3 * plane;
    for (size_t p = 0; p < plane; ++p) {
      for (size_t c = 0; c < 3; ++c) dst[p * 3 + c] = record[1 + c * plane + p];
    }
  }
  return Ok();
}

Result<Dataset> LoadCifar10(const std::string& dir, Split split) {
  Dataset out;
  out.name = "cifar10";
  out.class_names = ReadCifarClassNames(dir);
  out.rows = out.cols = static_cast<int>(kCifarSide);
  out.channels = 3;
  std::vector<std::string> files;
  if (split == Split::kTest) {
    files.push_back("test_batch.bin");
  } else {
    for (int i = 1; i <= 5; ++i) files.push_back(fmt::format("data_batch_{}.bin", i));
  }
  for (const auto& file : files) TRY(AppendCifar10File((fs::path(dir) / file).string(), out));
  return out;
}

Result<Dataset> Load(const DatasetOptions& options) {
  if (options.name == "fashion-mnist") {
    return LoadFashionMnist(options.dir.empty() ? kFashionMnistDefaultDir : options.dir, options.split);
  }
  if (options.name == "cifar10") {
    if (options.dir.empty())
      return std::unexpected(Error::InvalidInput("cifar10 needs --data-dir: no copy ships with the system"));
    return LoadCifar10(options.dir, options.split);
  }
  return std::unexpected(
      Error::InvalidInput(fmt::format("unknown dataset '{}' (known: fashion-mnist, cifar10)", options.name)));
}

Result<Split> ParseSplit(std::string_view text) {
  if (text == "train") return Split::kTrain;
  if (text == "test") return Split::kTest;
  return std::unexpected(Error::InvalidInput(fmt::format("unknown split '{}' (known: train, test)", text)));
}

std::string_view SplitName(Split split) { return split == Split::kTrain ? "train" : "test"; }

}  // namespace iotinfer::dataset
