#include "dataset/faults.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "core/text.h"

namespace iotinfer::dataset {
namespace {

struct KindInfo {
  std::string_view name;
  FaultKind kind;
  double max;
  bool max_inclusive;
};

constexpr KindInfo kKinds[] = {
    {"noise", FaultKind::kNoise, 2.0, true},     {"blur", FaultKind::kBlur, 20.0, true},
    {"rotate", FaultKind::kRotate, 180.0, true}, {"occlude", FaultKind::kOcclude, 1.0, false},
    {"dead", FaultKind::kDeadPixels, 1.0, true}, {"corrupt", FaultKind::kCorrupt, 1.0, true},
};

// Accepted spellings besides the canonical names.
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"rotation", "rotate"}, {"occlusion", "occlude"}, {"dead-pixels", "dead"}, {"deadpixels", "dead"}};

// Fault specs are one line: only spaces surround their parts.
std::string_view Trim(std::string_view s) { return iotinfer::Trim(s, " "); }

template <typename Number>
bool ParseNumber(std::string_view text, Number& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

// SplitMix64: a cheap, well-mixed way to derive independent streams from (seed, producer, n).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t StreamSeed(uint64_t seed, int producer_id, uint64_t sequence, FaultKind kind) {
  return Mix(Mix(Mix(seed) ^ static_cast<uint64_t>(producer_id)) ^ sequence) ^ static_cast<uint64_t>(kind);
}

void AddNoise(cv::Mat& mat, double strength, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, static_cast<float>(strength * 255.0));
  uint8_t* p = mat.data;
  for (size_t i = 0, n = mat.total() * mat.channels(); i < n; ++i) {
    p[i] = static_cast<uint8_t>(std::clamp(static_cast<float>(p[i]) + normal(rng), 0.0f, 255.0f) + 0.5f);
  }
}

void Rotate(cv::Mat& mat, double max_degrees, std::mt19937_64& rng) {
  double angle = std::uniform_real_distribution<double>(-max_degrees, max_degrees)(rng);
  cv::Point2f center(static_cast<float>(mat.cols - 1) / 2.0f, static_cast<float>(mat.rows - 1) / 2.0f);
  cv::Mat rotation = cv::getRotationMatrix2D(center, angle, 1.0);
  cv::Mat out;
  cv::warpAffine(mat, out, rotation, mat.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  out.copyTo(mat);
}

void Occlude(cv::Mat& mat, double fraction, std::mt19937_64& rng) {
  int side = static_cast<int>(std::lround(std::sqrt(fraction * mat.rows * mat.cols)));
  side = std::clamp(side, 0, std::min(mat.rows, mat.cols));
  if (side == 0) return;
  int y = std::uniform_int_distribution<int>(0, mat.rows - side)(rng);
  int x = std::uniform_int_distribution<int>(0, mat.cols - side)(rng);
  mat(cv::Rect(x, y, side, side)).setTo(cv::Scalar::all(0));
}

void KillPixels(cv::Mat& mat, double fraction, uint64_t sensor_seed) {
  std::mt19937_64 rng(sensor_seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const size_t pixels = mat.total();
  const int channels = mat.channels();
  for (size_t i = 0; i < pixels; ++i) {
    if (u(rng) < fraction) std::fill_n(mat.data + i * channels, channels, uint8_t{0});
  }
}

}  // namespace

std::string_view FaultName(FaultKind kind) {
  for (const auto& info : kKinds) {
    if (info.kind == kind) return info.name;
  }
  return "?";
}

Result<FaultPlan> FaultPlan::Parse(std::string_view spec) {
  FaultPlan plan;
  while (!Trim(spec).empty()) {
    size_t comma = spec.find(',');
    std::string_view item = Trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    auto bad = [&](std::string_view why) {
      return std::unexpected(Error::InvalidInput(fmt::format("fault spec item '{}': {}", item, why)));
    };

    size_t colon = item.find(':');
    size_t equals = item.find('=');
    if (colon == std::string_view::npos || equals == std::string_view::npos || equals < colon) {
      return bad("expected PRODUCERS:KIND=STRENGTH, e.g. 3:noise=0.4");
    }
    std::string_view who = Trim(item.substr(0, colon));
    std::string_view kind_name = Trim(item.substr(colon + 1, equals - colon - 1));
    std::string_view strength_text = Trim(item.substr(equals + 1));

    Rule rule{0, std::numeric_limits<int>::max(), {}};
    if (who != "*") {
      size_t dash = who.find('-', 1);
      bool ok = dash == std::string_view::npos
                    ? ParseNumber(who, rule.first) && (rule.last = rule.first, true)
                    : ParseNumber(who.substr(0, dash), rule.first) && ParseNumber(who.substr(dash + 1), rule.last);
      if (!ok || rule.first < 0 || rule.last < rule.first)
        return bad("producers must be an id, a range like 2-4, or *");
    }
    for (const auto& [alias, name] : kAliases) {
      if (kind_name == alias) kind_name = name;
    }
    const KindInfo* info = nullptr;
    for (const auto& candidate : kKinds) {
      if (candidate.name == kind_name) info = &candidate;
    }
    if (!info)
      return bad(fmt::format("unknown fault '{}' (known: noise, blur, rotate, occlude, dead, corrupt)", kind_name));
    double strength = 0;
    if (!ParseNumber(strength_text, strength) || !(strength > 0) ||
        (info->max_inclusive ? strength > info->max : strength >= info->max)) {
      return bad(fmt::format("strength must be a number in (0, {}{}", info->max, info->max_inclusive ? "]" : ")"));
    }
    rule.fault = {info->kind, strength};
    plan.rules_.push_back(rule);
  }
  return plan;
}

std::vector<Fault> FaultPlan::For(int producer_id) const {
  std::vector<Fault> faults;
  for (const auto& rule : rules_) {
    if (producer_id >= rule.first && producer_id <= rule.last) faults.push_back(rule.fault);
  }
  return faults;
}

void ApplyFaults(std::span<const Fault> faults, uint64_t seed, int producer_id, uint64_t sequence, Image& image) {
  if (faults.empty() || image.pixels.empty()) return;
  cv::Mat mat(image.rows, image.cols, CV_8UC(image.channels), image.pixels.data());
  for (const Fault& fault : faults) {
    std::mt19937_64 rng(StreamSeed(seed, producer_id, sequence, fault.kind));
    switch (fault.kind) {
      case FaultKind::kNoise:
        AddNoise(mat, fault.strength, rng);
        break;
      case FaultKind::kBlur:
        cv::GaussianBlur(mat, mat, cv::Size(0, 0), fault.strength, fault.strength, cv::BORDER_REFLECT101);
        break;
      case FaultKind::kRotate:
        Rotate(mat, fault.strength, rng);
        break;
      case FaultKind::kOcclude:
        Occlude(mat, fault.strength, rng);
        break;
      case FaultKind::kDeadPixels:
        // Not per image: a sensor's dead pixels stay where they are.
        KillPixels(mat, fault.strength, StreamSeed(seed, producer_id, 0, fault.kind));
        break;
      case FaultKind::kCorrupt:
        break;  // the message's, not the pixels'
    }
  }
}

bool CorruptsMessage(std::span<const Fault> faults, uint64_t seed, int producer_id, uint64_t sequence) {
  for (const Fault& fault : faults) {
    if (fault.kind != FaultKind::kCorrupt) continue;
    std::mt19937_64 rng(StreamSeed(seed, producer_id, sequence, fault.kind));
    if (std::uniform_real_distribution<double>(0.0, 1.0)(rng) < fault.strength) return true;
  }
  return false;
}

}  // namespace iotinfer::dataset
