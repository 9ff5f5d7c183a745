#include "dataset/dataset.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>

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

void PutBigEndian32(uint32_t value, std::vector<uint8_t>& out) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

// Writes an idx file of `dims` whose payload is `data`, gzipped, to `path` by way of a
// temporary file beside it.
Status WriteIdxGzip(const std::string& path, uint32_t magic, std::span<const uint32_t> dims,
                    std::span<const uint8_t> data) {
  std::vector<uint8_t> header;
  PutBigEndian32(magic, header);
  for (uint32_t dim : dims) PutBigEndian32(dim, header);
  const std::string temporary = path + ".tmp";
  gzFile file = gzopen(temporary.c_str(), "wb");
  if (!file) return std::unexpected(Error::Io(fmt::format("{}: cannot create", temporary)));
  bool written = gzwrite(file, header.data(), static_cast<unsigned>(header.size())) == static_cast<int>(header.size());
  // gzwrite takes an unsigned count: a large payload goes in slices.
  constexpr size_t kSlice = size_t{1} << 24;
  for (size_t at = 0; written && at < data.size(); at += kSlice) {
    const auto count = static_cast<unsigned>(std::min(kSlice, data.size() - at));
    written = gzwrite(file, data.data() + at, count) == static_cast<int>(count);
  }
  // gzclose flushes what is buffered: its result says whether the whole file reached the disk.
  written = gzclose(file) == Z_OK && written;
  std::error_code error;
  if (written) fs::rename(temporary, path, error);
  if (!written || error) {
    fs::remove(temporary, error);
    return std::unexpected(Error::Io(fmt::format("{}: cannot write", path)));
  }
  return Ok();
}

struct IdxPaths {
  std::string images;
  std::string labels;
};

IdxPaths FashionMnistPaths(const std::string& dir, Split split) {
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  return {(fs::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string(),
          (fs::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string()};
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
  const auto [images_path, labels_path] = FashionMnistPaths(dir, split);

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

Status WriteFashionMnist(const Dataset& data, const std::string& dir, Split split) {
  if (data.channels != 1) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("{} has {} channels; idx files hold grey images", data.name, data.channels)));
  }
  if (data.pixels.size() != data.size() * data.image_bytes()) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("{}: {} bytes of pixels for {} labels of {}x{} images", data.name,
                                        data.pixels.size(), data.size(), data.rows, data.cols)));
  }
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) return std::unexpected(Error::Io(fmt::format("{}: cannot create: {}", dir, error.message())));
  const auto [images_path, labels_path] = FashionMnistPaths(dir, split);
  const auto count = static_cast<uint32_t>(data.size());
  const uint32_t image_dims[] = {count, static_cast<uint32_t>(data.rows), static_cast<uint32_t>(data.cols)};
  TRY(WriteIdxGzip(images_path, kIdxImagesMagic, image_dims, data.pixels));
  const uint32_t label_dims[] = {count};
  return WriteIdxGzip(labels_path, kIdxLabelsMagic, label_dims, data.labels);
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
