#include "dlq/dlq.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <span>

#include "core/clock.h"
#include "core/text.h"
#include "dlq/letter.h"
#include "kafka/dead_letter.h"
#include "kafka/transactional_producer.h"

namespace iotinfer::dlq {
namespace {

// Reading a topic to its end must end: generous, as a dead-letter topic can hold gigabytes,
// but bounded. Replay also writes while it reads.
constexpr std::chrono::minutes kReadTimeout{10};
constexpr std::chrono::minutes kReplayTimeout{60};
constexpr size_t kListedAtMost = 50;
constexpr size_t kShownValueBytes = 200;

std::string AllowedReasons() {
  std::string codes;
  for (const kafka::DeadLetterReason reason : kafka::kDeadLetterReasons) {
    codes += std::string(kafka::ReasonCode(reason)) + ", ";
  }
  return codes + "unknown";
}

// A Selection, checked and ready to test letters against.
struct Matcher {
  std::set<std::string> reasons;
  std::set<int64_t> producers;  // -1: unknown
  std::optional<int64_t> since_us, until_us;

  static Result<Matcher> Parse(const Selection& selection, int64_t now_us) {
    Matcher m;
    for (const std::string& reason : selection.reasons) {
      if (reason != "unknown" && !kafka::ParseReasonCode(reason)) {
        return std::unexpected(Error::InvalidInput(
            fmt::format("--reason '{}' is no reason code; they are: {}", Escape(reason, 100), AllowedReasons())));
      }
      m.reasons.insert(reason);
    }
    for (const std::string& producer : selection.producers) {
      if (producer == "unknown") {
        m.producers.insert(-1);
        continue;
      }
      const bool digits = !producer.empty() && producer.size() <= 10 &&
                          std::ranges::all_of(producer, [](char c) { return c >= '0' && c <= '9'; });
      const int64_t id = digits ? std::stoll(producer) : -1;
      if (!digits || id >= (int64_t{1} << 31)) {
        return std::unexpected(Error::InvalidInput(fmt::format(
            "--producer '{}' is neither a producer id (a decimal below 2^31) nor unknown", Escape(producer, 100))));
      }
      m.producers.insert(id);
    }
    auto bound = [&](const std::string& text, const char* flag) -> Result<std::optional<int64_t>> {
      if (text.empty()) return std::nullopt;
      Result<int64_t> at = ParseTime(text, now_us);
      if (!at) return std::unexpected(at.error().WithContext(flag));
      return *at;
    };
    ASSIGN_OR_RETURN(m.since_us, bound(selection.since, "--since"));
    ASSIGN_OR_RETURN(m.until_us, bound(selection.until, "--until"));
    if (m.since_us && m.until_us && *m.since_us >= *m.until_us) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("--since {} is not before --until {}", FormatTime(*m.since_us), FormatTime(*m.until_us))));
    }
    return m;
  }

  bool Matches(const Letter& letter) const {
    if (!reasons.empty() && !reasons.contains(std::string(ReasonLabel(letter)))) return false;
    if (!producers.empty() && !producers.contains(letter.producer.value_or(-1))) return false;
    if ((since_us || until_us) && !letter.failed_at_us) return false;
    if (since_us && *letter.failed_at_us < *since_us) return false;
    if (until_us && *letter.failed_at_us >= *until_us) return false;
    return true;
  }

  bool Any() const { return !reasons.empty() || !producers.empty() || since_us || until_us; }
};

// The topics to read: those given, each of which must exist, or the defaults, of which those
// that do not exist are reported as such. Each with whether it exists.
Result<std::vector<std::pair<std::string, bool>>> TopicsToRead(const kafka::KafkaConfig& config,
                                                               const std::vector<std::string>& given) {
  std::vector<std::pair<std::string, bool>> topics;
  std::set<std::string> seen;
  for (const std::string& topic : given.empty() ? DefaultTopics() : given) {
    if (!seen.insert(topic).second) continue;
    Result<int> partitions = kafka::PartitionCount(config, topic);
    if (!partitions && (partitions.error().code() != Error::Code::kNotFound || !given.empty())) {
      return std::unexpected(partitions.error());
    }
    topics.emplace_back(topic, partitions.has_value());
  }
  return topics;
}

std::string Plural(int64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

}  // namespace

Result<std::vector<TopicCounts>> CountLetters(const StatsOptions& options) {
  ASSIGN_OR_RETURN(const Matcher matcher, Matcher::Parse(options.selection, NowMicros()));
  Result<std::chrono::milliseconds> bucket = ParseDuration(options.bucket);
  if (!bucket) return std::unexpected(bucket.error().WithContext("--bucket"));
  const std::chrono::milliseconds bucket_ms = *bucket;
  if (bucket_ms < std::chrono::seconds(1)) {
    return std::unexpected(Error::InvalidInput(fmt::format("--bucket {} is shorter than a second", options.bucket)));
  }
  const int64_t bucket_us = bucket_ms.count() * 1000;
  ASSIGN_OR_RETURN(const auto topics, TopicsToRead(options.kafka, options.topics));
  std::vector<TopicCounts> all;
  for (const auto& [topic, exists] : topics) {
    TopicCounts counts{.topic = topic, .exists = exists};
    if (exists) {
      TRY(kafka::ScanTopic(
          options.kafka, topic,
          [&](const kafka::InputMessage& in) -> Status {
            const Letter letter = ReadLetter(in);
            if (!matcher.Matches(letter)) return Ok();
            counts.letters++;
            if (letter.payload_dropped) counts.payload_dropped++;
            if (!letter.problems.empty()) counts.malformed++;
            counts.by_reason[std::string(ReasonLabel(letter))]++;
            counts.by_producer[letter.producer.value_or(-1)]++;
            if (letter.failed_at_us) {
              // Floored, so that times before 1970 fall in their own bucket too.
              const int64_t at = *letter.failed_at_us;
              counts.by_bucket[(at >= 0 ? at / bucket_us : (at - bucket_us + 1) / bucket_us) * bucket_us]++;
            } else {
              counts.unknown_time++;
            }
            return Ok();
          },
          kReadTimeout));
    }
    all.push_back(std::move(counts));
  }
  return all;
}

Result<std::string> StatsText(const StatsOptions& options) {
  ASSIGN_OR_RETURN(const std::vector<TopicCounts> all, CountLetters(options));
  std::string out;
  for (const TopicCounts& c : all) {
    if (!c.exists) {
      out += fmt::format("{}: no such topic\n", c.topic);
      continue;
    }
    out += fmt::format("{}: {}", c.topic, Plural(c.letters, "dead letter", "dead letters"));
    if (c.payload_dropped || c.malformed) {
      out += fmt::format(" ({} without its payload, {} with missing or malformed dead-letter headers)",
                         c.payload_dropped, c.malformed);
    }
    out += "\n";
    if (c.letters == 0) continue;
    out += "  by reason:\n";
    for (const kafka::DeadLetterReason reason : kafka::kDeadLetterReasons) {
      const auto it = c.by_reason.find(std::string(kafka::ReasonCode(reason)));
      if (it != c.by_reason.end()) out += fmt::format("    {:<20} {:>10}\n", it->first, it->second);
    }
    if (const auto it = c.by_reason.find("unknown"); it != c.by_reason.end()) {
      out += fmt::format("    {:<20} {:>10}\n", it->first, it->second);
    }
    out += "  by producer:\n";
    for (const auto& [producer, letters] : c.by_producer) {
      if (producer >= 0) out += fmt::format("    {:<20} {:>10}\n", producer, letters);
    }
    if (const auto it = c.by_producer.find(-1); it != c.by_producer.end()) {
      out += fmt::format("    {:<20} {:>10}\n", "unknown", it->second);
    }
    out += fmt::format("  by failed-at, per {} from (UTC):\n", options.bucket);
    for (const auto& [start, letters] : c.by_bucket) {
      out += fmt::format("    {:<20} {:>10}\n", FormatTime(start), letters);
    }
    if (c.unknown_time) out += fmt::format("    {:<20} {:>10}\n", "unknown", c.unknown_time);
  }
  return out;
}

Result<std::string> ShowText(const ShowOptions& options) {
  ASSIGN_OR_RETURN(const Matcher matcher, Matcher::Parse(options.selection, NowMicros()));
  if (options.limit < 1) return std::unexpected(Error::InvalidInput("--limit must be at least 1"));
  ASSIGN_OR_RETURN(const auto topics, TopicsToRead(options.kafka, options.topics));
  struct Shown {
    Letter letter;
    std::string key;
  };
  // Newest first; letters of one time by place, the later first.
  auto newer = [](const Shown& a, const Shown& b) {
    const int64_t ta = a.letter.failed_at_us.value_or(INT64_MIN), tb = b.letter.failed_at_us.value_or(INT64_MIN);
    if (ta != tb) return ta > tb;
    return a.letter.at > b.letter.at;
  };
  const size_t limit = static_cast<size_t>(options.limit);
  std::vector<Shown> kept;
  int64_t matched = 0;
  std::string missing;
  for (const auto& [topic, exists] : topics) {
    if (!exists) {
      missing += fmt::format("{}: no such topic\n", topic);
      continue;
    }
    TRY(kafka::ScanTopic(
        options.kafka, topic,
        [&](const kafka::InputMessage& in) -> Status {
          Letter letter = ReadLetter(in);
          if (!matcher.Matches(letter)) return Ok();
          matched++;
          kept.push_back({std::move(letter), in.message.key});
          // Only the newest `limit` are kept: memory stays bounded whatever the topic holds.
          if (kept.size() >= 2 * limit) {
            std::nth_element(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(limit), kept.end(), newer);
            kept.resize(limit);
          }
          return Ok();
        },
        kReadTimeout));
  }
  std::sort(kept.begin(), kept.end(), newer);
  if (kept.size() > limit) kept.resize(limit);
  std::string out = missing;
  out += fmt::format(
      "{} match; {}, newest first\n", Plural(matched, "letter", "letters"),
      kept.size() == static_cast<size_t>(matched) ? "all shown" : fmt::format("the {} newest", kept.size()));
  for (const Shown& shown : kept) {
    const Letter& l = shown.letter;
    auto line = [&](std::string_view name, const std::string& value) {
      out += fmt::format("  {:<11}{}\n", name, value);
    };
    out += fmt::format("\n{}\n", FormatPosition(l.at));
    line("failed-at", l.failed_at_us ? FormatTime(*l.failed_at_us, true) : "unknown");
    line("reason", std::string(ReasonLabel(l)));
    line("error", l.error.empty() ? "(none)" : Escape(l.error));
    line("source", l.source ? FormatPosition(*l.source) : "unknown");
    line("producer", ProducerLabel(l));
    line("key", fmt::format("\"{}\"", Escape(shown.key, kShownValueBytes)));
    std::string payload = fmt::format("{} bytes (not shown)", l.payload_bytes);
    for (const auto& header : l.dead_letter_headers) {
      if (header.name == kafka::dead_letter_headers::kPayloadDropped) {
        payload = "dropped: " + Escape(header.value, kShownValueBytes);
      }
    }
    line("payload", payload);
    if (!l.original_headers.empty()) out += "  headers\n";
    for (const auto& header : l.original_headers) {
      out += fmt::format("    {}: \"{}\"\n", Escape(header.name, kShownValueBytes),
                         Escape(header.value, kShownValueBytes));
    }
    for (const std::string& problem : l.problems) line("problem", problem);
  }
  return out;
}

Result<ReplayReport> Replay(const ReplayOptions& options) {
  ASSIGN_OR_RETURN(const Matcher matcher, Matcher::Parse(options.selection, NowMicros()));
  if (options.letters_per_transaction < 1) {
    return std::unexpected(Error::InvalidInput("a transaction must hold at least one letter"));
  }
  ReplayReport report{
      .topic = options.topic,
      .marker_topic = options.marker_topic.empty() ? options.topic + ".replayed" : options.marker_topic};
  const std::string& marker_topic = report.marker_topic;
  TRY(kafka::PartitionCount(options.kafka, options.topic));
  // Where a letter may be sent back to, and whether that topic exists: asked once per topic.
  std::map<std::string, Status> targets;
  auto check_target = [&](const std::string& target) -> Status {
    auto [it, asked] = targets.try_emplace(target, Ok());
    if (!asked) return it->second;
    if (target == options.topic || target == marker_topic) {
      it->second = std::unexpected(Error::InvalidInput(
          fmt::format("will not replay {} into {}: it is the dead-letter or the marker topic", options.topic, target)));
    } else if (Result<int> partitions = kafka::PartitionCount(options.kafka, target); !partitions) {
      it->second = std::unexpected(partitions.error().WithContext("the topic to replay into"));
    }
    return it->second;
  };
  if (!options.to.empty()) TRY(check_target(options.to));

  std::unique_ptr<kafka::TransactionalProducer> producer;
  if (!options.dry_run) {
    // Compacted: a marker is kept for as long as the topic is, whatever its age.
    TRY(kafka::EnsureTopics(options.kafka,
                            {{.name = marker_topic, .partitions = 1, .configs = {{"cleanup.policy", "compact"}}}}));
    // One transactional id per dead-letter topic: creating the producer fences every earlier
    // replay of it, and resolves the transaction one left open, before the markers are read.
    ASSIGN_OR_RETURN(producer,
                     kafka::TransactionalProducer::Create({.kafka = options.kafka,
                                                           .transactional_id = "iotinfer-dlq-replay-" + options.topic,
                                                           .topics = {marker_topic}}));
  }
  std::set<std::string> replayed;
  Status markers = kafka::ScanTopic(
      options.kafka, marker_topic,
      [&](const kafka::InputMessage& in) -> Status {
        replayed.insert(in.message.key);
        return Ok();
      },
      kReadTimeout);
  // A dry run creates nothing: no marker topic yet means nothing replayed yet.
  if (!markers && !(options.dry_run && markers.error().code() == Error::Code::kNotFound)) {
    return std::unexpected(markers.error().WithContext("reading what was replayed before from " + marker_topic));
  }

  struct Pending {
    std::string key;  // the letter's place, the marker's key
    kafka::OutputMessage replay;
    kafka::OutputMessage marker;
  };
  std::vector<Pending> pending;
  size_t pending_bytes = 0;
  auto commit = [&](std::span<const Pending> part) -> Status {
    std::vector<kafka::OutputMessage> messages;
    for (const Pending& p : part) {
      messages.push_back(p.replay);
      messages.push_back(p.marker);
    }
    const int number = report.transactions + 1;
    TRY(producer->Commit(messages, [&] {
      if (options.before_commit) options.before_commit(number);
    }));
    report.transactions++;
    for (const Pending& p : part) {
      report.replayed++;
      report.to_topics[p.replay.topic]++;
      replayed.insert(p.key);
    }
    if (options.after_commit) options.after_commit(number);
    return Ok();
  };
  auto refuse = [&](const Pending& p, const Error& error) {
    if (report.refused++ == 0) report.refusal = fmt::format("{}: {}", p.key, error.message());
  };
  auto flush = [&]() -> Status {
    if (pending.empty()) return Ok();
    Status committed = commit(pending);
    if (!committed && committed.error().code() == Error::Code::kInvalidInput) {
      // The cluster refused a message of the transaction, and so all of it: alone, each letter
      // either goes or is counted as refused. A refused letter gets no marker: a later run,
      // once the cause is mended (a topic's max.message.bytes raised, say), sends it.
      if (pending.size() == 1) {
        refuse(pending.front(), committed.error());
        committed = Ok();
      } else {
        committed = Ok();
        for (const Pending& p : pending) {
          Status alone = commit({&p, 1});
          if (alone) continue;
          if (alone.error().code() != Error::Code::kInvalidInput) {
            committed = std::move(alone);
            break;
          }
          refuse(p, alone.error());
        }
      }
    }
    pending.clear();
    pending_bytes = 0;
    return committed;
  };

  Status scanned = kafka::ScanTopic(
      options.kafka, options.topic,
      [&](const kafka::InputMessage& in) -> Status {
        report.letters++;
        const Letter letter = ReadLetter(in);
        if (!matcher.Matches(letter)) return Ok();
        report.chosen++;
        const std::string key = FormatPosition(letter.at);
        if (replayed.contains(key)) {
          report.already++;
          return Ok();
        }
        if (!letter.source) {
          report.no_source++;
          return Ok();
        }
        if (!letter.Replayable()) {
          report.no_payload++;
          return Ok();
        }
        const std::string& target = options.to.empty() ? letter.source->topic : options.to;
        TRY(check_target(target));
        if (options.dry_run) {
          report.replayed++;
          report.to_topics[target]++;
          if (report.listed.size() < kListedAtMost) {
            report.listed.push_back(
                fmt::format("{} -> {} ({}, producer {})", key, target, ReasonLabel(letter), ProducerLabel(letter)));
          }
          return Ok();
        }
        kafka::OutputMessage marker{marker_topic, {key, target, {{"replayed-at", std::to_string(NowMicros())}}}};
        pending.push_back({key, {target, ReplayMessage(in)}, std::move(marker)});
        pending_bytes += in.message.key.size() + in.message.value.size();
        for (const auto& header : in.message.headers) pending_bytes += header.name.size() + header.value.size();
        if (pending.size() >= static_cast<size_t>(options.letters_per_transaction) ||
            pending_bytes >= options.bytes_per_transaction) {
          TRY(flush());
        }
        return Ok();
      },
      kReplayTimeout);
  if (scanned) scanned = flush();
  if (!scanned) {
    if (report.transactions == 0) return std::unexpected(scanned.error());
    return std::unexpected(scanned.error().WithContext(fmt::format(
        "replaying {}: {} committed in {} before this (a rerun replays the rest, never those)", options.topic,
        Plural(report.replayed, "letter", "letters"), Plural(report.transactions, "transaction", "transactions"))));
  }
  return report;
}

Result<std::string> ReplayText(const ReplayOptions& options) {
  ASSIGN_OR_RETURN(const ReplayReport r, Replay(options));
  std::string out = fmt::format("{}{}: {} read, {} chosen\n", options.dry_run ? "dry run: " : "", r.topic,
                                Plural(r.letters, "letter", "letters"), r.chosen);
  std::string where;
  for (const auto& [topic, letters] : r.to_topics) {
    where += fmt::format("{}{} to {}", where.empty() ? " (" : ", ", letters, topic);
  }
  if (!options.dry_run && r.transactions > 0) {
    where += ", in " + Plural(r.transactions, "transaction", "transactions");
  }
  if (!where.empty()) where += ")";
  auto row = [&](std::string_view name, int64_t count, std::string_view note) {
    out += fmt::format("  {:<16}{:>8}{}\n", name, count, note);
  };
  row(options.dry_run ? "would replay" : "replayed", r.replayed, where);
  row("replayed before", r.already, "");
  row("no payload", r.no_payload, "  (payload dropped, or an original the client could not read)");
  row("no source", r.no_source, "  (no valid 'source' header)");
  row("refused", r.refused, r.refusal.empty() ? "" : "  (the first: " + r.refusal + ")");
  if (!options.dry_run) out += fmt::format("  markers in {}\n", r.marker_topic);
  for (const std::string& line : r.listed) out += "  " + line + "\n";
  if (static_cast<int64_t>(r.listed.size()) < r.replayed && options.dry_run) {
    out += fmt::format("  ... and {} more\n", r.replayed - static_cast<int64_t>(r.listed.size()));
  }
  return out;
}

}  // namespace iotinfer::dlq
