#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "dataset/dataset.h"
#include "dataset/faults.h"

namespace iotinfer::dataset {

/// The strengths augmentation draws a fault kind at: uniformly from [low, high], in the units
/// of faults.h. They cover the demo's faults (demo.h kDefaultFaults: noise 0.08-0.15, blur
/// 1.0-1.4, rotate 20, occlude 0.2, dead 0.1) and reach about twice as far, so that a model
/// trained on them has seen worse devices than the demo's.
struct StrengthRange {
  FaultKind kind;
  double low;
  double high;
};
inline constexpr StrengthRange kAugmentRanges[] = {
    {FaultKind::kNoise, 0.02, 0.30},       // the demo's: 0.08 and 0.15
    {FaultKind::kBlur, 0.5, 2.0},          // 1.0 and 1.4
    {FaultKind::kRotate, 5.0, 40.0},       // 20
    {FaultKind::kOcclude, 0.05, 0.35},     // 0.2
    {FaultKind::kDeadPixels, 0.02, 0.25},  // 0.1
};

struct AugmentOptions {
  int copies = 1;  // augmented copies of each image
  uint64_t seed = 1;
  // How often an image gets a second fault of another kind (the demo's device 6 has two).
  double second_fault_probability = 0.25;
};

/// What one augmented image goes through: its faults, in order, and the producer and image
/// number that ApplyFaults is given for them. The producer is drawn too, so that dead pixels
/// (which stay where they are for one producer) fall elsewhere on every image.
struct AugmentDraw {
  std::vector<Fault> faults;
  int producer_id = 0;
  uint64_t sequence = 0;
};

/// The draw for augmented image `image` (copy k of image i of an n-image dataset is image
/// k * n + i): one fault of a kind chosen uniformly from kAugmentRanges, at a strength drawn
/// from its range, and with `second_fault_probability` a second one of another kind.
/// Deterministic: it depends only on the seed and `image`.
AugmentDraw DrawAugmentation(const AugmentOptions& options, uint64_t image);

/// `options.copies` augmented copies of every image of `data`, copy after copy (copy k of
/// image i is image k * data.size() + i), labels unchanged. Each image's pixels are what
/// ApplyFaults makes of it for its DrawAugmentation, exactly what a simulated device with
/// those faults sends. InvalidInput for fewer than one copy or a second-fault probability
/// outside [0, 1].
Result<Dataset> Augment(const Dataset& data, const AugmentOptions& options);

/// `iotinfer augment`: augmented copies of a Fashion-MNIST split, written as its idx files.
struct AugmentFilesOptions {
  DatasetOptions dataset;       // its split is `split`'s
  std::string split = "train";  // train or test (ParseSplit)
  AugmentOptions augment;
  size_t limit = 0;  // augment the first `limit` images only; 0: all
  std::string out_dir;
};

/// Loads the split, augments it and writes the copies to `out_dir` under the split's own file
/// names (WriteFashionMnist), so that LoadFashionMnist(out_dir, split) and model/train.py
/// --augment read them, and augment.json beside them: the options and kAugmentRanges, which
/// train.py records with the model. Returns what was written, for people: where, how many images, and
/// how many of them got each fault kind. Fails as ParseSplit, Load, Augment and
/// WriteFashionMnist do.
Result<std::string> WriteAugmented(AugmentFilesOptions options);

}  // namespace iotinfer::dataset
