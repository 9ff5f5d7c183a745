#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/image.h"

namespace iotinfer::dataset {

enum class Split { kTrain, kTest };

/// A labelled image set held in memory: `size()` images of one shape, pixels back to back
/// (HxWxC, RGB for three channels), one label index per image into `class_names`.
struct Dataset {
  std::string name;
  std::vector<std::string> class_names;
  int rows = 0;
  int cols = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> labels;

  size_t size() const { return labels.size(); }
  size_t image_bytes() const { return static_cast<size_t>(rows) * cols * channels; }
  ImageView image(size_t i) const { return {rows, cols, channels, {pixels.data() + i * image_bytes(), image_bytes()}}; }
};

inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

/// Reads Fashion-MNIST from the gzipped idx files in `dir` (as Debian's dataset-fashion-mnist
/// ships them): {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz. A missing, truncated,
/// mis-sized or wrong-magic file, or image and label counts that differ, give an error naming
/// the file and the problem.
Result<Dataset> LoadFashionMnist(const std::string& dir, Split split);

/// Writes `data` as the gzipped idx files of Fashion-MNIST's `split` into `dir` (created if
/// missing), the files LoadFashionMnist reads back: {train,t10k}-images-idx3-ubyte.gz, the
/// images as [size, rows, cols], and {train,t10k}-labels-idx1-ubyte.gz. Each file is written
/// beside its final name and renamed into place, so a reader never sees half of one.
/// InvalidInput for images of more than one channel (idx3 holds grey images) or a label
/// count that is not the image count; Io when a file cannot be written.
Status WriteFashionMnist(const Dataset& data, const std::string& dir, Split split);

/// Reads the CIFAR-10 binary format from `dir`: data_batch_1..5.bin (train) or test_batch.bin
/// (test), each a sequence of 3073-byte records (label byte, then 1024 R, 1024 G, 1024 B).
/// Class names come from batches.meta.txt when present. A missing file, a size that is not a
/// whole number of records, or a label above 9 give an error naming the file.
Result<Dataset> LoadCifar10(const std::string& dir, Split split);

/// Reads one CIFAR-10 binary file (see LoadCifar10) and appends its records to `out`.
Status AppendCifar10File(const std::string& path, Dataset& out);

struct DatasetOptions {
  std::string name = "fashion-mnist";  // "fashion-mnist" or "cifar10"
  std::string dir;                     // empty: the dataset's default location
  Split split = Split::kTest;
};

/// Loads the named dataset; unknown names give InvalidInput listing the known ones.
Result<Dataset> Load(const DatasetOptions& options);

/// "train" or "test"; anything else is InvalidInput.
Result<Split> ParseSplit(std::string_view text);
std::string_view SplitName(Split split);

}  // namespace iotinfer::dataset
