#include "evaluate/evaluation.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "dataset/faults.h"

namespace iotinfer::evaluate {
namespace {

std::string DescribeFaults(const std::vector<dataset::Fault>& faults) {
  std::string out;
  for (const auto& fault : faults) {
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", dataset::FaultName(fault.kind), fault.strength);
  }
  return out;
}

double Ratio(int64_t num, int64_t den) { return den ? static_cast<double>(num) / den : 0.0; }

}  // namespace

Result<EvaluationReport> Evaluate(const EvaluationOptions& options) {
  if (options.batch < 1) return std::unexpected(Error::InvalidInput("batch must be at least 1"));
  if (options.producers < 1) return std::unexpected(Error::InvalidInput("producers must be at least 1"));
  ASSIGN_OR_RETURN(dataset::FaultPlan plan, dataset::FaultPlan::Parse(options.faults));
  ASSIGN_OR_RETURN(dataset::Dataset data, dataset::Load(options.dataset));
  if (data.class_names != options.classifier.class_names) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("the model's classes ({}, ...) are not the {} dataset's classes ({}, ...)",
                                        options.classifier.class_names.front(), data.name, data.class_names.front())));
  }
  ASSIGN_OR_RETURN(auto classifier, model::Classifier::Create(options.classifier));

  const size_t n = options.limit ? std::min(options.limit, data.size()) : data.size();
  EvaluationReport report;
  report.dataset = data.name;
  report.model_id = classifier->model_id();
  report.threads = classifier->threads();
  report.engine = std::string(model::EngineName(classifier->engine()));
  report.batch = options.batch;
  report.images = static_cast<int64_t>(n);
  report.predictions.resize(n);
  const size_t classes = data.class_names.size();
  report.confusion.assign(classes, std::vector<int64_t>(classes, 0));
  for (int p = 0; p < options.producers; ++p) report.producers.push_back({p, 0, 0, DescribeFaults(plan.For(p))});

  // Faults are applied up front so that the timing below covers classification alone.
  std::vector<Image> faulty;
  if (!plan.empty()) {
    faulty.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      int producer = static_cast<int>(i % options.producers);
      faulty.push_back(Image::CopyOf(data.image(i)));
      auto faults = plan.For(producer);
      dataset::ApplyFaults(faults, options.seed, producer, i, faulty.back());
    }
  }

  std::vector<ImageView> views(options.batch);
  std::vector<model::Prediction> predictions(options.batch);
  const auto start = std::chrono::steady_clock::now();
  for (size_t begin = 0; begin < n; begin += options.batch) {
    const size_t count = std::min<size_t>(options.batch, n - begin);
    for (size_t j = 0; j < count; ++j) views[j] = faulty.empty() ? data.image(begin + j) : faulty[begin + j].view();
    TRY(classifier->Classify({views.data(), count}, {predictions.data(), count}));
    for (size_t j = 0; j < count; ++j) report.predictions[begin + j] = static_cast<uint8_t>(predictions[j].label);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.rechecked = static_cast<int64_t>(classifier->rechecked());

  report.classes.resize(classes);
  for (size_t c = 0; c < classes; ++c) report.classes[c].name = data.class_names[c];
  for (size_t i = 0; i < n; ++i) {
    const int truth = data.labels[i], predicted = report.predictions[i];
    const bool right = truth == predicted;
    report.confusion[truth][predicted]++;
    report.classes[truth].total++;
    report.classes[truth].correct += right;
    report.classes[predicted].predicted++;
    auto& producer = report.producers[i % options.producers];
    producer.total++;
    producer.correct += right;
    report.correct += right;
  }
  return report;
}

std::string FormatReport(const EvaluationReport& r) {
  std::string out = fmt::format("{} images of {}, model {}\n", r.images, r.dataset, r.model_id);
  out += fmt::format("accuracy {:.2f}% ({} of {} right)\n", 100.0 * r.accuracy(), r.correct, r.images);
  out += fmt::format("throughput {:.0f} images/s (batch {}, {} threads, {}, {:.2f} s)\n", r.images_per_second(),
                     r.batch, r.threads, r.engine, r.seconds);
  if (r.engine == model::EngineName(model::Engine::kOneDnnInt8)) {
    out += fmt::format("close calls classified again in float32: {} ({:.1f}%)\n", r.rechecked,
                       100.0 * Ratio(r.rechecked, r.images));
  }
  out += "\n";
  out += fmt::format("{:<12} {:>7} {:>9} {:>9}\n", "class", "images", "recall", "precision");
  for (const auto& c : r.classes) {
    out += fmt::format("{:<12} {:>7} {:>8.2f}% {:>8.2f}%\n", c.name, c.total, 100.0 * Ratio(c.correct, c.total),
                       100.0 * Ratio(c.correct, c.predicted));
  }
  if (r.producers.size() > 1) {
    out += fmt::format("\n{:<9} {:>7} {:>9}  {}\n", "producer", "images", "accuracy", "faults");
    for (const auto& p : r.producers) {
      out += fmt::format("{:<9} {:>7} {:>8.2f}%  {}\n", p.producer_id, p.total, 100.0 * Ratio(p.correct, p.total),
                         p.faults.empty() ? "-" : p.faults);
    }
  }
  return out;
}

}  // namespace iotinfer::evaluate
