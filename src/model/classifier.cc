#include "model/classifier.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>

#include "model/calibration.h"
#include "model/onednn_net.h"

namespace iotinfer::model {
namespace {

namespace fs = std::filesystem;

Result<std::vector<char>> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(Error::NotFound(fmt::format("model {}: cannot open", path)));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) return std::unexpected(Error::InvalidInput(fmt::format("model {}: empty file", path)));
  return bytes;
}

std::string Sha256Hex(std::span<const char> bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

std::string ModelIdOf(const std::string& path, std::span<const char> bytes) {
  return fmt::format("{}-{}", fs::path(path).stem().string(), Sha256Hex(bytes).substr(0, 8));
}

// One copy of the network with its own input buffer; used by one thread at a time.
struct Replica {
  cv::dnn::Net net;
  std::unique_ptr<OnednnNet> onednn;  // runs the network instead of `net` when set
  cv::Mat input;                      // [max_batch, C, H, W] float32, grown on demand
  std::vector<float> logits;          // [batch, classes], of its last batch
  // With an int8 `onednn`: the float32 net that classifies close calls again.
  std::unique_ptr<OnednnNet> check;
  std::vector<int> close;  // rows of its last batch to check
  std::vector<float> check_input, check_logits;
  uint64_t rechecked = 0;
};

// A row of some replica's batch, to classify again in float32.
struct CloseCall {
  Replica* owner;
  int row;
};

// How far the top logit of `row` leads the next.
float Lead(const float* row, int classes) {
  float first = -INFINITY, second = -INFINITY;
  for (int c = 0; c < classes; ++c) {
    second = std::max(second, std::min(first, row[c]));
    first = std::max(first, row[c]);
  }
  return first - second;
}

// The largest amount by which `int8` moved any logit relative to its top one, against the
// float32 `exact`, over images of `classes` logits each. Where int8's top logit leads by more
// than this, float32's top class is the same.
float LargestShift(std::span<const float> exact, std::span<const float> int8, int classes) {
  float largest = 0.f;
  for (size_t i = 0; i < exact.size(); i += classes) {
    const float* e = exact.data() + i;
    const float* q = int8.data() + i;
    const int top = static_cast<int>(std::max_element(q, q + classes) - q);
    for (int c = 0; c < classes; ++c) largest = std::max(largest, std::abs((q[c] - e[c]) - (q[top] - e[top])));
  }
  return largest;
}

// Recheck margins are this many times the largest shift seen in calibration: images unlike
// the calibration's shift more. Fashion-MNIST test images blurred with sigma 2 (not in the
// training set) reached 1.19 times the training set's largest, and no prediction changed on
// any fault profile with this factor (docs/bench-log.md).
constexpr float kRecheckSafety = 2.f;

// Whether `done` came true within a short spin (none unless `spin`). A sleeping thread took
// tens of microseconds to wake, and a batch of 64 on two replicas takes under a millisecond:
// the replicas spent 7% of it waiting for each other (docs/bench-log.md, 2026-12-05). The
// spin costs at most this much CPU a batch when no work follows.
template <typename Done>
bool SpinUntil(bool spin, Done done) {
  constexpr auto kSpin = std::chrono::microseconds(50);
  if (!spin) return done();
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    if (done()) return true;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
    if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return false;
  }
}

}  // namespace

struct Classifier::Impl {
  ClassifierOptions options;
  std::string model_id;
  std::vector<Replica> replicas;
  float recheck_margin = 0.f;  // of the calibration, for this CPU's weight bits

  // Workers 1..n-1 each own replicas[i]; the calling thread runs replicas[0]. A batch runs in
  // steps, each a job that every replica below `active` runs on its own thread (Dispatch).
  std::vector<std::jthread> workers;
  std::vector<Status> statuses;  // of each replica's part of the job
  const std::function<Status(size_t)>* job = nullptr;
  size_t active = 0;
  std::mutex mu;
  std::condition_variable work_ready;
  std::condition_variable work_done;
  // Written under `mu`; read without it while spinning.
  std::atomic<uint64_t> generation = 0;
  std::atomic<int> pending = 0;
  std::atomic<bool> stopping = false;
  // Whether a waiting replica spins first: not with more replicas than cores, where a spinning
  // one would hold back a busy one.
  bool spin = false;
  // The close calls of a batch that ran on several replicas, any replica's rows.
  std::vector<CloseCall> close_calls;

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    work_ready.notify_all();
    workers.clear();  // joins
  }

  void WorkerLoop(size_t index) {
    uint64_t seen = 0;
    for (;;) {
      auto ready = [&] { return stopping || generation != seen; };
      if (!SpinUntil(spin, ready)) {
        std::unique_lock lock(mu);
        work_ready.wait(lock, ready);
      }
      if (stopping) return;
      seen = generation;
      if (index < active) statuses[index] = (*job)(index);
      if (pending.fetch_sub(1) == 1) {
        std::lock_guard lock(mu);  // the caller is spinning, or waiting with `mu` released
        work_done.notify_one();
      }
    }
  }

  // Runs `run(i)` for i in [0, parts) on replica i's thread, the calling thread taking 0; the
  // first error. One part wakes no worker.
  Status Dispatch(size_t parts, const std::function<Status(size_t)>& run) {
    if (parts == 1) return run(0);
    {
      std::lock_guard lock(mu);
      job = &run;
      active = parts;
      pending = static_cast<int>(workers.size());
      ++generation;
    }
    work_ready.notify_all();
    const Status mine = run(0);
    auto done = [&] { return pending == 0; };
    if (!SpinUntil(spin, done)) {
      std::unique_lock lock(mu);
      work_done.wait(lock, done);
    }
    TRY(mine);
    for (size_t i = 1; i < parts; ++i) TRY(statuses[i]);
    return Ok();
  }

  // `image` in the network's channels, rows and cols, as u8 HWC (a header over its pixels
  // when it already is).
  Result<cv::Mat> ToInputShape(const ImageView& image) const {
    const int rows = options.input_rows, cols = options.input_cols, channels = options.input_channels;
    if (image.pixels.empty() || image.pixels.size() != image.size_bytes() ||
        (image.channels != 1 && image.channels != 3 && image.channels != 4)) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("cannot classify an image of shape {} with {} bytes",
                                          ShapeString(image.rows, image.cols, image.channels), image.pixels.size())));
    }
    cv::Mat src(image.rows, image.cols, CV_8UC(image.channels), const_cast<uint8_t*>(image.pixels.data()));
    cv::Mat converted = src;
    if (image.channels != channels) {
      static constexpr int kToGray[] = {0, 0, 0, cv::COLOR_RGB2GRAY, cv::COLOR_RGBA2GRAY};
      static constexpr int kToRgb[] = {0, cv::COLOR_GRAY2RGB, 0, 0, cv::COLOR_RGBA2RGB};
      cv::cvtColor(src, converted, channels == 1 ? kToGray[image.channels] : kToRgb[image.channels]);
    }
    if (converted.rows != rows || converted.cols != cols) {
      bool shrinking = converted.rows > rows || converted.cols > cols;
      cv::resize(converted, converted, cv::Size(cols, rows), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
    }
    if (!converted.isContinuous()) converted = converted.clone();
    return converted;
  }

  Status Fill(std::span<const ImageView> images, cv::Mat& input) const {
    const int rows = options.input_rows, cols = options.input_cols, channels = options.input_channels;
    const size_t plane = static_cast<size_t>(rows) * cols;
    float* dst = input.ptr<float>();
    for (const ImageView& image : images) {
      ASSIGN_OR_RETURN(const cv::Mat converted, ToInputShape(image));
      // HWC u8 -> CHW float, the layout the network was trained on; one plane at a time, so
      // that a grey image is one contiguous loop the compiler vectorizes (the nested loop cost
      // 3% of the int8 engine's time).
      const uint8_t* p = converted.ptr<uint8_t>();
      if (channels == 1) {
        for (size_t i = 0; i < plane; ++i) dst[i] = p[i];
      } else {
        for (int c = 0; c < channels; ++c) {
          for (size_t i = 0; i < plane; ++i) dst[c * plane + i] = p[i * channels + c];
        }
      }
      dst += plane * channels;
    }
    return Ok();
  }

  // `images` as the network's input, in `replica`'s buffer.
  Result<cv::Mat> Prepare(Replica& replica, std::span<const ImageView> images) const {
    const int n = static_cast<int>(images.size());
    if (replica.input.empty() || replica.input.size[0] < n) {
      replica.input.create({n, options.input_channels, options.input_rows, options.input_cols}, CV_32F);
    }
    TRY(Fill(images, replica.input));
    // A header over the first n images: no copy, and OpenCV sees the batch size it must run.
    return cv::Mat({n, options.input_channels, options.input_rows, options.input_cols}, CV_32F, replica.input.data);
  }

  // `images` into `replica`'s logits; with a float32 net to check it, the rows whose top
  // logit leads by less than the recheck margin into its `close`.
  Status Forward(Replica& replica, std::span<const ImageView> images) const {
    const int n = static_cast<int>(images.size());
    ASSIGN_OR_RETURN(cv::Mat batch, Prepare(replica, images));
    const int classes = static_cast<int>(options.class_names.size());
    replica.logits.resize(static_cast<size_t>(n) * classes);
    if (replica.onednn) {
      TRY(replica.onednn->Forward({batch.ptr<float>(), batch.total()}, replica.logits));
    } else {
      try {
        replica.net.setInput(batch);
        const cv::Mat logits = replica.net.forward();
        std::copy_n(logits.ptr<float>(), replica.logits.size(), replica.logits.begin());
      } catch (const cv::Exception& e) {
        return std::unexpected(Error::Internal(fmt::format("model {}: inference failed: {}", model_id, e.err)));
      }
    }
    replica.close.clear();
    if (!replica.check) return Ok();
    for (int i = 0; i < n; ++i) {
      if (Lead(replica.logits.data() + static_cast<size_t>(i) * classes, classes) < recheck_margin) {
        replica.close.push_back(i);
      }
    }
    return Ok();
  }

  // Replaces the logits of `calls`, rows of any replica's last batch, with float32's, computed
  // by `self`'s float32 net.
  Status Recheck(Replica& self, std::span<const CloseCall> calls) const {
    if (calls.empty()) return Ok();
    const int classes = static_cast<int>(options.class_names.size());
    const size_t image = static_cast<size_t>(options.input_channels) * options.input_rows * options.input_cols;
    self.check_input.resize(calls.size() * image);
    self.check_logits.resize(calls.size() * classes);
    for (size_t k = 0; k < calls.size(); ++k) {
      std::copy_n(calls[k].owner->input.ptr<float>(calls[k].row), image, self.check_input.begin() + k * image);
    }
    TRY(self.check->Forward(self.check_input, self.check_logits));
    for (size_t k = 0; k < calls.size(); ++k) {
      std::copy_n(self.check_logits.begin() + k * classes, classes,
                  calls[k].owner->logits.begin() + static_cast<size_t>(calls[k].row) * classes);
    }
    self.rechecked += calls.size();
    return Ok();
  }

  // The top class and its softmax probability of each row of `replica`'s last batch.
  void Predict(const Replica& replica, std::span<Prediction> out) const {
    const size_t classes = options.class_names.size();
    for (size_t i = 0; i < out.size(); ++i) {
      const float* row = replica.logits.data() + i * classes;
      const float* best = std::max_element(row, row + classes);
      float sum = 0.f;
      for (size_t c = 0; c < classes; ++c) sum += std::exp(row[c] - *best);
      out[i] = {static_cast<int>(best - row), 1.f / sum};
    }
  }

  // `images` split between `parts` replicas. The close calls of every part are then shared out
  // afresh: a replica's part of a batch of 64 has about three on AVX2, a few more or less, and
  // each takes as long as two images in int8, so a replica with more kept the other waiting.
  Status Run(std::span<const ImageView> images, std::span<Prediction> out, size_t parts) {
    const size_t n = images.size(), base = n / parts, extra = n % parts;
    auto part = [&](size_t i) { return std::pair(i * base + std::min(i, extra), base + (i < extra ? 1 : 0)); };
    TRY(Dispatch(parts, [&](size_t i) {
      const auto [begin, count] = part(i);
      return Forward(replicas[i], images.subspan(begin, count));
    }));
    close_calls.clear();
    for (size_t i = 0; i < parts; ++i) {
      for (int row : replicas[i].close) close_calls.push_back({&replicas[i], row});
    }
    if (const size_t checkers = std::min(parts, close_calls.size()); checkers > 0) {
      const std::span<const CloseCall> calls = close_calls;
      TRY(Dispatch(checkers, [&](size_t i) {
        const size_t begin = calls.size() * i / checkers, end = calls.size() * (i + 1) / checkers;
        return Recheck(replicas[i], calls.subspan(begin, end - begin));
      }));
    }
    for (size_t i = 0; i < parts; ++i) {
      const auto [begin, count] = part(i);
      Predict(replicas[i], out.subspan(begin, count));
    }
    return Ok();
  }
};

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::~Classifier() = default;

Result<std::unique_ptr<Classifier>> Classifier::Create(const ClassifierOptions& options, ModelFault* fault) {
  ModelFault ignored;
  ModelFault& why = fault ? *fault : ignored;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.model_path.empty()) impl->options.model_path = DefaultModelPath();
  const std::string& path = impl->options.model_path;
  const std::string calibration_path =
      options.calibration_path.empty() ? DefaultCalibrationPath(path) : options.calibration_path;
  if (impl->options.engine == Engine::kAuto) {
    std::error_code ec;
    const bool calibrated = !options.calibration_path.empty() || fs::exists(calibration_path, ec);
    impl->options.engine = calibrated ? Engine::kOneDnnInt8 : Engine::kOneDnn;
  }
  const ClassifierOptions& o = impl->options;
  why = ModelFault::kIncompatible;
  if (o.class_names.empty()) return std::unexpected(Error::InvalidInput("classifier needs at least one class name"));
  if (o.input_channels != 1 && o.input_channels != 3) {
    return std::unexpected(Error::InvalidInput(fmt::format("input channels must be 1 or 3, not {}", o.input_channels)));
  }
  why = ModelFault::kUnreadable;
  ASSIGN_OR_RETURN(std::vector<char> bytes, ReadFile(path));
  impl->model_id = ModelIdOf(path, bytes);

  std::vector<float> int8_ranges;
  if (o.engine == Engine::kOneDnnInt8) {
    why = ModelFault::kCalibration;
    const std::string remedy = fmt::format("make one with `iotinfer calibrate --model {}`", path);
    auto calibration = ReadCalibration(calibration_path);
    if (!calibration) {
      return std::unexpected(
          Error(calibration.error().code(), fmt::format("model {}: the int8 engine needs a calibration: {} ({})", path,
                                                        calibration.error().message(), remedy)));
    }
    if (calibration->model_id != impl->model_id) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("calibration {} was made for model {}, not {} ({})", calibration_path,
                                          calibration->model_id, impl->model_id, remedy)));
    }
    int8_ranges = std::move(calibration->activation_ranges);
    // An empty list would quietly mean float32 to OnednnNet.
    if (int8_ranges.empty()) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("calibration {}: no activation ranges", calibration_path)));
    }
    const int bits = OnednnNet::NativeWeightBits();
    const auto margin = calibration->recheck_margins.find(bits);
    if (margin == calibration->recheck_margins.end()) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("calibration {}: no recheck margin for {}-bit weights, which this CPU uses ({})",
                      calibration_path, bits, remedy)));
    }
    impl->recheck_margin = margin->second;
  }

  int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cv::setNumThreads(1);
  why = ModelFault::kUnreadable;
  impl->replicas.resize(threads);
  for (Replica& replica : impl->replicas) {
    try {
      replica.net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
    } catch (const cv::Exception& e) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("model {}: not a loadable ONNX network: {}", path, e.err)));
    }
    if (replica.net.empty()) return std::unexpected(Error::InvalidInput(fmt::format("model {}: empty network", path)));
    replica.net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    replica.net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  }

  // Prove the geometry once, so a wrong model fails here rather than on the first batch.
  why = ModelFault::kIncompatible;
  const std::string expected =
      fmt::format("[1, {}, {}, {}] -> [1, {}]", o.input_channels, o.input_rows, o.input_cols, o.class_names.size());
  for (Replica& replica : impl->replicas) {
    cv::Mat probe({1, o.input_channels, o.input_rows, o.input_cols}, CV_32F, cv::Scalar(0));
    cv::Mat out;
    try {
      replica.net.setInput(probe);
      out = replica.net.forward();
    } catch (const cv::Exception& e) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("model {}: does not accept the input {}: {}", path, expected, e.err)));
    }
    if (out.total() != o.class_names.size() || out.size[0] != 1) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("model {}: produced {} values for one image; expected {}", path, out.total(), expected)));
    }
    if (o.engine != Engine::kOpenCv) {
      auto onednn = OnednnNet::FromOpenCv(replica.net, o.input_channels, o.input_rows, o.input_cols, int8_ranges);
      if (!onednn) {
        return std::unexpected(Error::InvalidInput(
            fmt::format("model {}: {} (--engine opencv runs any model OpenCV loads)", path, onednn.error().message())));
      }
      replica.onednn = std::move(*onednn);
      if (impl->recheck_margin > 0.f) {
        ASSIGN_OR_RETURN(replica.check,
                         OnednnNet::FromOpenCv(replica.net, o.input_channels, o.input_rows, o.input_cols));
      }
    }
  }

  impl->statuses.resize(threads);
  impl->spin = static_cast<unsigned>(threads) <= std::thread::hardware_concurrency();
  for (int i = 1; i < threads; ++i) impl->workers.emplace_back([raw = impl.get(), i] { raw->WorkerLoop(i); });
  return std::unique_ptr<Classifier>(new Classifier(std::move(impl)));
}

Status Classifier::Classify(std::span<const ImageView> images, std::span<Prediction> out) {
  if (out.size() != images.size()) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("{} images but {} output slots", images.size(), out.size())));
  }
  Impl& impl = *impl_;
  const size_t n = images.size();
  if (n == 0) return Ok();
  // Waking a worker costs more than one image takes, so tiny batches stay on this thread.
  return impl.Run(images, out, std::min(impl.replicas.size(), n));
}

Result<Calibration> Classifier::Calibrate(std::span<const ImageView> images) {
  Impl& impl = *impl_;
  if (impl.options.engine != Engine::kOneDnn) {
    return std::unexpected(Error::FailedPrecondition("calibration runs on the float32 oneDNN engine"));
  }
  Replica& replica = impl.replicas[0];
  // In slices, so that calibrating on a whole training set needs no input buffer for all of it.
  auto for_each_slice = [&](const std::function<Status(std::span<const float>)>& run) -> Status {
    constexpr size_t kSlice = 4096;
    for (size_t begin = 0; begin < images.size(); begin += kSlice) {
      ASSIGN_OR_RETURN(cv::Mat batch,
                       impl.Prepare(replica, images.subspan(begin, std::min(kSlice, images.size() - begin))));
      TRY(run({batch.ptr<float>(), batch.total()}));
    }
    return Ok();
  };
  Calibration calibration{.model_id = impl.model_id};
  std::vector<float>& ranges = calibration.activation_ranges;
  auto widen_ranges = [&](std::span<const float> input) -> Status {
    ASSIGN_OR_RETURN(std::vector<float> slice, replica.onednn->ActivationRanges(input));
    if (ranges.empty()) ranges.assign(slice.size(), 0.f);
    for (size_t i = 0; i < slice.size(); ++i) ranges[i] = std::max(ranges[i], slice[i]);
    return Ok();
  };
  TRY(for_each_slice(widen_ranges));
  const ClassifierOptions& o = impl.options;
  const int classes = replica.onednn->classes();
  constexpr int kWeightBits[] = {7, 8};
  std::vector<std::unique_ptr<OnednnNet>> int8;
  for (int bits : kWeightBits) {
    ASSIGN_OR_RETURN(int8.emplace_back(),
                     OnednnNet::FromOpenCv(replica.net, o.input_channels, o.input_rows, o.input_cols, ranges, bits));
  }
  std::vector<float> shifts(int8.size(), 0.f);
  // Each slice's float32 logits serve both weight widths.
  auto widen_shifts = [&](std::span<const float> input) -> Status {
    const size_t n = input.size() / (static_cast<size_t>(o.input_channels) * o.input_rows * o.input_cols);
    std::vector<float> exact(n * classes), quantized(n * classes);
    TRY(replica.onednn->Forward(input, exact));
    for (size_t i = 0; i < int8.size(); ++i) {
      TRY(int8[i]->Forward(input, quantized));
      shifts[i] = std::max(shifts[i], LargestShift(exact, quantized, classes));
    }
    return Ok();
  };
  TRY(for_each_slice(widen_shifts));
  for (size_t i = 0; i < int8.size(); ++i) calibration.recheck_margins[kWeightBits[i]] = kRecheckSafety * shifts[i];
  return calibration;
}

uint64_t Classifier::rechecked() const {
  uint64_t total = 0;
  for (const Replica& replica : impl_->replicas) total += replica.rechecked;
  return total;
}

const std::vector<std::string>& Classifier::class_names() const { return impl_->options.class_names; }
const std::string& Classifier::model_id() const { return impl_->model_id; }
Status Classifier::ToInputShape(Image& image) const {
  const ClassifierOptions& o = impl_->options;
  if (image.rows == o.input_rows && image.cols == o.input_cols && image.channels == o.input_channels) return Ok();
  ASSIGN_OR_RETURN(const cv::Mat converted, impl_->ToInputShape(image.view()));
  image = Image{converted.rows, converted.cols, converted.channels(),
                std::vector<uint8_t>(converted.data, converted.data + converted.total() * converted.elemSize())};
  return Ok();
}

int Classifier::threads() const { return static_cast<int>(impl_->replicas.size()); }
Engine Classifier::engine() const { return impl_->options.engine; }

namespace {
constexpr Engine kEngines[] = {Engine::kAuto, Engine::kOneDnn, Engine::kOneDnnInt8, Engine::kOpenCv};
}  // namespace

Result<Engine> ParseEngine(std::string_view name) {
  for (Engine engine : kEngines) {
    if (name == EngineName(engine)) return engine;
  }
  return std::unexpected(
      Error::InvalidInput(fmt::format("unknown engine '{}' (auto, onednn, onednn-int8 or opencv)", name)));
}

std::vector<std::string> EngineNames() {
  std::vector<std::string> names;
  for (Engine engine : kEngines) names.emplace_back(EngineName(engine));
  return names;
}

std::string_view EngineName(Engine engine) {
  switch (engine) {
    case Engine::kAuto:
      return "auto";
    case Engine::kOpenCv:
      return "opencv";
    case Engine::kOneDnn:
      return "onednn";
    case Engine::kOneDnnInt8:
      return "onednn-int8";
  }
  return "?";
}

Result<std::string> ModelId(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<char> bytes, ReadFile(path));
  return ModelIdOf(path, bytes);
}

std::string_view OnednnIsa() { return OnednnNet::Isa(); }

std::string DefaultModelPath() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path installed = exe.parent_path().parent_path() / "share" / "iotinfer" / "fmnist-cnn.onnx";
    if (fs::exists(installed, ec)) return installed.string();
  }
  return std::string(IOTINFER_SOURCE_DIR) + "/model/fmnist-cnn.onnx";
}

}  // namespace iotinfer::model
