#include "stream/dead_letter_watch.h"

#include <cstdio>
#include <utility>

#include "dlq/letter.h"

namespace iotinfer::stream {
namespace {

constexpr size_t kLatest = 10;
constexpr size_t kErrorBytes = 1024;  // what DeadLetter keeps; a letter from elsewhere may hold more
// A look is one metadata request. Every 30 s, a look that failed under load (the cluster slow
// to answer its 2 s) hid the letters of the first half minute from the dashboard.
constexpr std::chrono::seconds kLookAgain{5};

}  // namespace

DeadLetterWatch::DeadLetterWatch(kafka::KafkaConfig kafka, std::vector<std::string> topics, std::string group)
    : kafka_(std::move(kafka)), group_(std::move(group)) {
  for (std::string& name : topics) topics_.push_back({.name = std::move(name)});
}

DeadLetterWatch::~DeadLetterWatch() {
  for (Topic& t : topics_) {
    if (t.consumer) t.consumer->Close();
  }
}

void DeadLetterWatch::Poll(DeadLetterView& view) {
  const auto now = std::chrono::steady_clock::now();
  for (Topic& t : topics_) {
    if (!t.consumer) {
      if (now < t.next_look) continue;
      t.next_look = now + kLookAgain;
      // Subscribing to a topic that is not there would log an error at every poll.
      if (!kafka::PartitionCount(kafka_, t.name, std::chrono::seconds(2))) continue;
      Result<std::unique_ptr<kafka::ExternalOffsetConsumer>> made = kafka::ExternalOffsetConsumer::Create(
          {.kafka = kafka_, .group = group_, .topics = {t.name}, .max_batch = 1000},
          [counted = t.counted](std::span<const kafka::PartitionId> assigned) {
            // Counted from the beginning once. Starting over on every assignment, a loaded
            // demo's page showed 30 letters where infer had written 20.
            std::map<kafka::PartitionId, int64_t> start;
            for (const kafka::PartitionId& p : assigned) {
              if (auto it = counted->find(p); it != counted->end()) start.emplace(p, it->second);
            }
            return start;
          });
      if (!made) {
        std::fprintf(stderr, "stream: cannot follow %s for the dashboard: %s\n", t.name.c_str(),
                     made.error().message().c_str());
        continue;
      }
      t.consumer = std::move(*made);
    }
    view.watching = true;
    Result<std::vector<kafka::InputMessage>> batch = t.consumer->Poll(std::chrono::milliseconds(0));
    if (!batch) {
      std::fprintf(stderr, "stream: following %s for the dashboard: %s\n", t.name.c_str(),
                   batch.error().message().c_str());
      t.consumer.reset();
      continue;
    }
    for (const kafka::InputMessage& in : *batch) {
      (*t.counted)[{in.topic, in.partition}] = in.offset + 1;
      const dlq::Letter letter = dlq::ReadLetter(in);
      const std::string reason(dlq::ReasonLabel(letter));
      ++view.by_reason[reason];
      view.latest.push_front({.topic = t.name,
                              .reason = reason,
                              .error = letter.error.substr(0, kErrorBytes),
                              .producer = dlq::ProducerLabel(letter),
                              .failed_at_us = letter.failed_at_us.value_or(0)});
      if (view.latest.size() > kLatest) view.latest.pop_back();
    }
  }
}

}  // namespace iotinfer::stream
