#include "dataset/augment.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>

namespace iotinfer::dataset {
namespace {

namespace fs = std::filesystem;

// augment.json beside the idx files: how they were made, for model/train.py to record.
Status WriteProvenance(const AugmentFilesOptions& options, const Dataset& data) {
  std::string ranges;
  for (const StrengthRange& range : kAugmentRanges) {
    ranges += fmt::format("{}\n    \"{}\": [{}, {}]", ranges.empty() ? "" : ",", FaultName(range.kind), range.low,
                          range.high);
  }
  const std::string path = (fs::path(options.out_dir) / "augment.json").string();
  std::ofstream out(path);
  out << fmt::format(
      "{{\n  \"dataset\": \"{}\",\n  \"split\": \"{}\",\n  \"source_images\": {},\n  \"copies\": {},\n"
      "  \"seed\": {},\n  \"second_fault_probability\": {},\n  \"ranges\": {{{}\n  }}\n}}\n",
      data.name, SplitName(options.dataset.split), data.size(), options.augment.copies, options.augment.seed,
      options.augment.second_fault_probability, ranges);
  out.close();
  if (!out) return std::unexpected(Error::Io(fmt::format("{}: cannot write", path)));
  return Ok();
}

}  // namespace

AugmentDraw DrawAugmentation(const AugmentOptions& options, uint64_t image) {
  // A generator of its own per image, so that an image's draw does not depend on which
  // images were drawn before it.
  std::seed_seq seeds{static_cast<uint32_t>(options.seed), static_cast<uint32_t>(options.seed >> 32),
                      static_cast<uint32_t>(image), static_cast<uint32_t>(image >> 32)};
  std::mt19937_64 rng(seeds);
  constexpr size_t kKinds = std::size(kAugmentRanges);
  const size_t first = std::uniform_int_distribution<size_t>(0, kKinds - 1)(rng);
  std::vector<size_t> kinds{first};
  if (std::bernoulli_distribution(std::clamp(options.second_fault_probability, 0.0, 1.0))(rng)) {
    kinds.push_back((first + 1 + std::uniform_int_distribution<size_t>(0, kKinds - 2)(rng)) % kKinds);
  }
  AugmentDraw draw;
  for (size_t kind : kinds) {
    const StrengthRange& range = kAugmentRanges[kind];
    draw.faults.push_back({range.kind, std::uniform_real_distribution<double>(range.low, range.high)(rng)});
  }
  draw.producer_id = std::uniform_int_distribution<int>(0, std::numeric_limits<int>::max())(rng);
  draw.sequence = image;
  return draw;
}

Result<Dataset> Augment(const Dataset& data, const AugmentOptions& options) {
  if (options.copies < 1) {
    return std::unexpected(Error::InvalidInput(fmt::format("copies must be at least 1, got {}", options.copies)));
  }
  if (!(options.second_fault_probability >= 0 && options.second_fault_probability <= 1)) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("the second fault's probability must be in [0, 1], got {}", options.second_fault_probability)));
  }
  Dataset out{.name = data.name,
              .class_names = data.class_names,
              .rows = data.rows,
              .cols = data.cols,
              .channels = data.channels,
              .pixels = {},
              .labels = {}};
  const size_t n = data.size();
  const size_t total = n * static_cast<size_t>(options.copies);
  out.pixels.resize(total * data.image_bytes());
  for (int copy = 0; copy < options.copies; ++copy) {
    out.labels.insert(out.labels.end(), data.labels.begin(), data.labels.end());
  }
  for (uint64_t image = 0; image < total; ++image) {
    Image faulty = Image::CopyOf(data.image(image % n));
    const AugmentDraw draw = DrawAugmentation(options, image);
    ApplyFaults(draw.faults, options.seed, draw.producer_id, draw.sequence, faulty);
    std::ranges::copy(faulty.pixels, out.pixels.begin() + static_cast<ptrdiff_t>(image * data.image_bytes()));
  }
  return out;
}

Result<std::string> WriteAugmented(AugmentFilesOptions options) {
  if (options.out_dir.empty()) return std::unexpected(Error::InvalidInput("no directory to write the copies to"));
  ASSIGN_OR_RETURN(options.dataset.split, ParseSplit(options.split));
  ASSIGN_OR_RETURN(Dataset data, Load(options.dataset));
  if (options.limit && options.limit < data.size()) {
    data.labels.resize(options.limit);
    data.pixels.resize(options.limit * data.image_bytes());
  }
  ASSIGN_OR_RETURN(Dataset augmented, Augment(data, options.augment));
  TRY(WriteFashionMnist(augmented, options.out_dir, options.dataset.split));
  TRY(WriteProvenance(options, data));

  // The account draws again rather than have Augment report: drawing is cheap next to faulting.
  size_t per_kind[std::size(kAugmentRanges)] = {};
  size_t two_faults = 0;
  for (uint64_t image = 0; image < augmented.size(); ++image) {
    const AugmentDraw draw = DrawAugmentation(options.augment, image);
    two_faults += draw.faults.size() > 1;
    for (const Fault& fault : draw.faults) {
      for (size_t k = 0; k < std::size(kAugmentRanges); ++k) per_kind[k] += kAugmentRanges[k].kind == fault.kind;
    }
  }
  std::string out =
      fmt::format("wrote {} images ({} copies of {} {} {} images, seed {}) to {} (augment.json says how)\n",
                  augmented.size(), options.augment.copies, data.size(), data.name, SplitName(options.dataset.split),
                  options.augment.seed, options.out_dir);
  out += fmt::format("{:<8} {:>7}  {}\n", "fault", "images", "strengths");
  for (size_t k = 0; k < std::size(kAugmentRanges); ++k) {
    const StrengthRange& range = kAugmentRanges[k];
    out += fmt::format("{:<8} {:>7}  {}-{}\n", FaultName(range.kind), per_kind[k], range.low, range.high);
  }
  out += fmt::format("{} images ({:.1f}%) have two faults\n", two_faults,
                     augmented.size() ? 100.0 * two_faults / augmented.size() : 0.0);
  return out;
}

}  // namespace iotinfer::dataset
