#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "dataset/dataset.h"
#include "model/classifier.h"

namespace iotinfer::evaluate {

struct EvaluationOptions {
  dataset::DatasetOptions dataset;
  model::ClassifierOptions classifier;
  std::string faults;  // fault spec (dataset/faults.h); empty: clean images
  int producers = 1;   // image i belongs to producer i % producers, for the fault spec
  uint64_t seed = 1;
  size_t limit = 0;  // evaluate the first `limit` images; 0: all
  int batch = 64;
};

struct ClassStats {
  std::string name;
  int64_t total = 0;      // images whose true class this is
  int64_t correct = 0;    // of those, predicted right
  int64_t predicted = 0;  // images predicted as this class
};

struct ProducerStats {
  int producer_id = 0;
  int64_t total = 0;
  int64_t correct = 0;
  std::string faults;  // "noise=0.4 blur=1.5", empty when healthy
};

struct EvaluationReport {
  std::string dataset;
  std::string model_id;
  std::string engine;  // what ran the network: onednn, onednn-int8 or opencv
  int threads = 0;
  int64_t rechecked = 0;  // images int8 classified again in float32
  int batch = 0;
  int64_t images = 0;
  int64_t correct = 0;
  double seconds = 0;  // classification only: preprocessing and inference, not loading
  std::vector<ClassStats> classes;
  std::vector<ProducerStats> producers;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  std::vector<uint8_t> predictions;             // per image, in dataset order

  double accuracy() const { return images ? static_cast<double>(correct) / images : 0.0; }
  double images_per_second() const { return seconds > 0 ? images / seconds : 0.0; }
};

/// Loads the dataset, applies the fault plan per producer, classifies every image in
/// batches and tallies the results. Fails when the dataset or model cannot be loaded, the
/// fault spec is invalid, or the model's classes differ from the dataset's.
Result<EvaluationReport> Evaluate(const EvaluationOptions& options);

/// The report as people read it: headline accuracy and throughput, a per-class table and,
/// with more than one producer, a per-producer table.
std::string FormatReport(const EvaluationReport& report);

}  // namespace iotinfer::evaluate
