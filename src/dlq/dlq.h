#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/topics.h"
#include "kafka/kafka.h"

namespace iotinfer::dlq {

/// Which dead letters a command takes, as given on the command line; checked when it runs
/// (InvalidInput, naming the flag). Empty lists take every letter.
struct Selection {
  std::vector<std::string> reasons;    // reason codes (kafka/dead_letter.h), or "unknown"
  std::vector<std::string> producers;  // producer ids, or "unknown"
  // Failed at or after `since`, before `until`: "2026-11-26", "2026-11-26T10:00[:00][Z]" (UTC),
  // or a duration ("2h", "30m") for that long ago. Empty: no bound.
  std::string since;
  std::string until;
};

/// The dead-letter topics read when none is given.
inline std::vector<std::string> DefaultTopics() { return {topics::kImagesDeadLetters, topics::kInferencesDeadLetters}; }

/// Each topic is read with read_committed from its beginning to its end as of the start.
struct StatsOptions {
  kafka::KafkaConfig kafka;
  std::vector<std::string> topics;  // empty: DefaultTopics(), skipping those that do not exist
  std::string bucket = "1h";        // a duration (core/text.h)
  Selection selection;
};

/// One topic's letters, counted.
struct TopicCounts {
  std::string topic;
  bool exists = true;
  int64_t letters = 0;                       // those the selection took
  int64_t payload_dropped = 0;               // of them, letters without their original value
  int64_t malformed = 0;                     // of them, letters with a missing or malformed dead-letter header
  std::map<std::string, int64_t> by_reason;  // ReasonLabel -> letters
  std::map<int64_t, int64_t> by_producer;    // producer id (-1: unknown) -> letters
  std::map<int64_t, int64_t> by_bucket;      // bucket start, microseconds since the epoch -> letters
  int64_t unknown_time = 0;                  // letters with neither `failed-at` nor a timestamp
};

/// Counts the letters of each topic by reason, by producer and per bucket of time.
/// NotFound for a topic given that does not exist; InvalidInput for a bad selection or bucket;
/// Unavailable when the cluster cannot be read.
Result<std::vector<TopicCounts>> CountLetters(const StatsOptions& options);

/// CountLetters as `iotinfer dlq stats` prints it.
Result<std::string> StatsText(const StatsOptions& options);

struct ShowOptions {
  kafka::KafkaConfig kafka;
  std::vector<std::string> topics;  // empty: DefaultTopics(), skipping those that do not exist
  Selection selection;
  int limit = 20;
};

/// The `limit` newest letters the selection takes, newest first (by `failed-at`), one block
/// each: where it sits, when it failed, reason, error, source, producer, its original key and
/// headers, and its payload's size (never the payload). Everything from the letter is escaped
/// (Escape). Errors as CountLetters'.
Result<std::string> ShowText(const ShowOptions& options);

struct ReplayOptions {
  kafka::KafkaConfig kafka;
  std::string topic = topics::kImagesDeadLetters;
  Selection selection;
  std::string to;  // where letters go; empty: the topic of each one's `source`
  bool dry_run = false;
  // Of the compacted topic that records each letter replayed; empty: "<topic>.replayed".
  std::string marker_topic;
  // A transaction holds at most this many letters, and this many bytes of them (one at least).
  int letters_per_transaction = 100;
  size_t bytes_per_transaction = 16 << 20;
  // For tests: called with each transaction's number (from 1) once its messages are written,
  // just before it commits, and once it committed; a test ends the process in one of them.
  std::function<void(int)> before_commit;
  std::function<void(int)> after_commit;
};

struct ReplayReport {
  std::string topic;
  std::string marker_topic;
  int64_t letters = 0;     // read
  int64_t chosen = 0;      // taken by the selection
  int64_t replayed = 0;    // sent back by this run (with dry_run: that would be)
  int64_t already = 0;     // replayed by an earlier run
  int64_t no_payload = 0;  // payload dropped, or an original the client could not read
  int64_t no_source = 0;   // no valid `source`: nowhere to send it back to
  int64_t refused = 0;     // the cluster refused the message sent back (too large for it, say)
  std::string refusal;     // the first refusal's reason
  int transactions = 0;
  std::map<std::string, int64_t> to_topics;  // where those replayed went
  std::vector<std::string> listed;           // with dry_run: the first letters it would replay
};

/// Sends the letters of `topic` that the selection takes back where they came from (or to
/// `to`), each with its original key, value and headers and a `replayed-from` header, exactly
/// once over every run: each letter goes in the same Kafka transaction as its marker (keyed by
/// the letter's topic/partition/offset) in `marker_topic`, and a run first fences every
/// earlier run (one transactional id per dead-letter topic) and then reads the markers, so a
/// letter replayed by any run, finished, crashed or still going, is never sent again.
/// Letters without their payload, a source, or a readable original are counted and left.
/// NotFound for a topic (or the target of a letter) that does not exist; InvalidInput for a
/// bad selection or a target that is a dead-letter or marker topic; FailedPrecondition when
/// another replay of the topic took over; Unavailable when the cluster cannot be read. An
/// error after some transactions committed says how many: a rerun replays the rest.
Result<ReplayReport> Replay(const ReplayOptions& options);

/// Replay as `iotinfer dlq replay` prints it.
Result<std::string> ReplayText(const ReplayOptions& options);

}  // namespace iotinfer::dlq
