#pragma once

// Helpers shared by the tests of the counting engines (native stream, Spark) against the real
// servers of the ctest fixtures.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/inference_record.h"
#include "kafka/kafka.h"
#include "store/store.h"
#include "test_util.h"

namespace iotinfer::testing {

/// Sends records[from, to) to `topic` as `infer` publishes them (key: the producer id).
inline void SendRecords(const std::string& topic, const std::vector<InferenceRecord>& records, size_t from, size_t to) {
  auto producer = kafka::Producer::Create({});
  ASSERT_OK(producer);
  for (size_t i = from; i < to; ++i) {
    const InferenceRecord& r = records[i];
    ASSERT_OK((*producer)->Send(topic, {std::to_string(r.producer_id), EncodeInferenceRecord(r), {}}));
  }
  ASSERT_OK((*producer)->Flush());
}

inline void SendRecords(const std::string& topic, const std::vector<InferenceRecord>& records) {
  SendRecords(topic, records, 0, records.size());
}

/// Per-producer (producer_id, incorrect, total, unlabelled), sorted, without the times: for
/// comparing what two computations counted.
using ResultCounts = std::vector<std::tuple<int, int64_t, int64_t, int64_t>>;

inline ResultCounts CountsOf(const std::vector<ProducerResult>& results) {
  ResultCounts counts;
  for (const auto& r : results) counts.emplace_back(r.producer_id, r.incorrect_count, r.total, r.unlabelled);
  std::sort(counts.begin(), counts.end());
  return counts;
}

/// The store `uri`/`database`, emptied; nullptr (and a test failure) when it cannot be opened.
inline std::unique_ptr<store::Store> OpenCleared(const std::string& uri, const std::string& database) {
  auto store = store::Store::Open({.uri = uri, .database = database});
  EXPECT_TRUE(store) << store.error().message();
  if (!store) return nullptr;
  EXPECT_TRUE((*store)->Clear());
  return std::move(*store);
}

}  // namespace iotinfer::testing
