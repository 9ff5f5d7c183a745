// The dead-letter tools against the real broker that the `kafka` ctest fixture starts: letters
// written as infer and sink write them (kafka::DeadLetter) or made by the real infer service.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "dlq/dlq.h"
#include "dlq/letter.h"
#include "infer/infer.h"
#include "infer_test_util.h"
#include "kafka/dead_letter.h"
#include "kafka_test_util.h"
#include "process_util.h"
#include "test_util.h"

namespace iotinfer::dlq {
namespace {

using iotinfer::testing::Iotinfer;
using iotinfer::testing::ReadAll;
using iotinfer::testing::UniqueTopic;
using iotinfer::testing::WriteAll;
using kafka::DeadLetterReason;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kHour = 3600'000000;
constexpr int64_t kTen = 1764151200'000000;  // 2025-11-26T10:00:00Z

// An image message as a device sends it; `id` also names its payload.
WireMessage ImageMessage(const std::string& id, const std::string& producer) {
  return {producer,
          "payload of " + id,
          {{"id", id}, {"producer_id", producer}, {"content-type", "image/png"}, {"x-device", "cam-" + producer}}};
}

// An image message whose payload is too large for a dead letter of at most kSmallDlq bytes.
constexpr size_t kSmallDlq = 600;
WireMessage LargeImageMessage(const std::string& id, const std::string& producer) {
  WireMessage m = ImageMessage(id, producer);
  m.value.assign(1000, 'x');
  return m;
}

// The dead letter infer or sink would write for `original`, found at `source` (topic, partition,
// offset), with `failed_at_us` in place of now when given.
kafka::OutputMessage DeadLetterOf(const std::string& dlq, const std::string& source_topic, int64_t source_offset,
                                  WireMessage original, DeadLetterReason reason,
                                  std::optional<int64_t> failed_at_us = std::nullopt, size_t max_bytes = 1'000'000) {
  kafka::InputMessage in{
      .message = std::move(original), .topic = source_topic, .partition = 0, .offset = source_offset};
  kafka::OutputMessage out =
      kafka::DeadLetter(dlq, in, reason, "why: " + std::string(kafka::ReasonCode(reason)), max_bytes);
  if (failed_at_us) {
    for (auto& header : out.message.headers) {
      if (header.name == "failed-at") header.value = std::to_string(*failed_at_us);
    }
  }
  return out;
}

// The messages of `topic` (read committed) by their `id` header, expecting `count`, and
// reading on a while so that a duplicate would show.
std::map<std::string, std::vector<WireMessage>> ById(const std::string& topic, size_t count) {
  std::map<std::string, std::vector<WireMessage>> by_id;
  for (WireMessage& m : ReadAll(topic, count, std::chrono::seconds(2))) {
    const std::string* id = m.FindHeader("id");
    by_id[id ? *id : "(none)"].push_back(std::move(m));
  }
  return by_id;
}

// Each of `ids` once in `topic`, and nothing else; each with its device's headers and a
// `replayed-from` naming a letter of `dlq`, and none of a dead letter's headers.
void ExpectEachReplayedOnce(const std::string& topic, const std::set<std::string>& ids, const std::string& dlq) {
  const auto by_id = ById(topic, ids.size());
  std::set<std::string> seen;
  for (const auto& [id, messages] : by_id) {
    seen.insert(id);
    EXPECT_EQ(messages.size(), 1u) << id << " appears " << messages.size() << " times";
    const WireMessage& m = messages.front();
    EXPECT_EQ(m.value, "payload of " + id);
    ASSERT_NE(m.FindHeader("replayed-from"), nullptr) << id;
    EXPECT_THAT(*m.FindHeader("replayed-from"), ::testing::StartsWith(dlq + "/"));
    ASSERT_NE(m.FindHeader("x-device"), nullptr) << "the device's own headers stay";
    EXPECT_EQ(*m.FindHeader("x-device"), "cam-" + m.key);
    for (const char* gone : {"error", "reason", "failed-at", "source", "payload-dropped"}) {
      EXPECT_EQ(m.FindHeader(gone), nullptr) << id << " still has " << gone;
    }
  }
  EXPECT_EQ(seen, ids);
}

// Letters of `dlq` whose sources are in `images`: the ids img-0 .. img-(n-1), producers 0-2.
std::vector<kafka::OutputMessage> ImageLetters(const std::string& dlq, const std::string& images, int n,
                                               DeadLetterReason reason = DeadLetterReason::kTooLarge) {
  std::vector<kafka::OutputMessage> letters;
  for (int i = 0; i < n; ++i) {
    letters.push_back(DeadLetterOf(dlq, images, 100 + i, ImageMessage(fmt::format("img-{}", i), std::to_string(i % 3)),
                                   reason, kTen + i));
  }
  return letters;
}

std::set<std::string> Ids(int n) {
  std::set<std::string> ids;
  for (int i = 0; i < n; ++i) ids.insert(fmt::format("img-{}", i));
  return ids;
}

ReplayOptions ReplayOf(const std::string& dlq) {
  ReplayOptions options;
  options.topic = dlq;
  return options;
}

TEST(DlqStatsTest, CountsByReasonProducerAndHourExactly) {
  const std::string dlq = UniqueTopic("stats-dlq"), images = UniqueTopic("stats-images");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 3}}));
  const int64_t minute = 60'000000;
  std::vector<kafka::OutputMessage> letters = {
      DeadLetterOf(dlq, images, 1, ImageMessage("a", "1"), DeadLetterReason::kUndecodableImage, kTen + 5 * minute),
      DeadLetterOf(dlq, images, 2, ImageMessage("b", "1"), DeadLetterReason::kUndecodableImage, kTen + 10 * minute),
      DeadLetterOf(dlq, images, 3, ImageMessage("c", "1"), DeadLetterReason::kUndecodableImage, kTen + 59 * minute),
      DeadLetterOf(dlq, images, 4, ImageMessage("d", "2"), DeadLetterReason::kTooLarge, kTen + kHour + 1'000000),
      // Its payload dropped to fit: counted so.
      DeadLetterOf(dlq, images, 5, LargeImageMessage("e", "2"), DeadLetterReason::kTooLarge, kTen + kHour + 30 * minute,
                   kSmallDlq),
      DeadLetterOf(dlq, images, 6, ImageMessage("f", "abc"), DeadLetterReason::kInvalidImage, kTen + 2 * kHour),
  };
  // Written before reason codes existed: no `reason`.
  WireMessage legacy = ImageMessage("g", "4");
  legacy.headers.insert(
      legacy.headers.end(),
      {{"error", "old"}, {"failed-at", std::to_string(kTen + 3 * kHour)}, {"source", images + "/0/7"}});
  letters.push_back({dlq, legacy});
  // Not a dead letter at all: no headers; its time is the record's own.
  letters.push_back({dlq, {"", "junk", {}}});
  ASSERT_NO_FATAL_FAILURE(WriteAll(letters));

  StatsOptions options{.topics = {dlq}};
  auto counts = CountLetters(options);
  ASSERT_OK(counts);
  ASSERT_EQ(counts->size(), 1u);
  const TopicCounts& c = counts->front();
  EXPECT_EQ(c.topic, dlq);
  EXPECT_EQ(c.letters, 8);
  EXPECT_EQ(c.payload_dropped, 1);
  EXPECT_EQ(c.malformed, 1);
  EXPECT_EQ(c.by_reason, (std::map<std::string, int64_t>{
                             {"undecodable-image", 3}, {"too-large", 2}, {"invalid-image", 1}, {"unknown", 2}}));
  EXPECT_EQ(c.by_producer, (std::map<int64_t, int64_t>{{1, 3}, {2, 2}, {4, 1}, {-1, 2}}));
  const std::vector<std::pair<int64_t, int64_t>> buckets(c.by_bucket.begin(), c.by_bucket.end());
  ASSERT_EQ(buckets.size(), 5u);
  EXPECT_EQ(buckets[0], std::pair(kTen, int64_t{3}));
  EXPECT_EQ(buckets[1], std::pair(kTen + kHour, int64_t{2}));
  EXPECT_EQ(buckets[2], std::pair(kTen + 2 * kHour, int64_t{1}));
  EXPECT_EQ(buckets[3], std::pair(kTen + 3 * kHour, int64_t{1}));
  EXPECT_GT(buckets[4].first, kTen + 24 * kHour) << "the junk's own timestamp, written now";
  EXPECT_EQ(buckets[4].second, 1);
  EXPECT_EQ(c.unknown_time, 0);

  // Two-hour buckets, and a window of time.
  options.bucket = "2h";
  counts = CountLetters(options);
  ASSERT_OK(counts);
  EXPECT_EQ(counts->front().by_bucket.at(kTen), 5);
  EXPECT_EQ(counts->front().by_bucket.at(kTen + 2 * kHour), 2);
  options.selection = {.since = "2025-11-26T11:00Z", .until = "2025-11-26T13:00:00Z"};
  counts = CountLetters(options);
  ASSERT_OK(counts);
  EXPECT_EQ(counts->front().letters, 3);
  EXPECT_EQ(counts->front().by_reason, (std::map<std::string, int64_t>{{"too-large", 2}, {"invalid-image", 1}}));

  auto text = StatsText({.topics = {dlq}});
  ASSERT_OK(text);
  EXPECT_THAT(*text, HasSubstr(dlq + ": 8 dead letters (1 without its payload, 1 with missing or malformed"));
  EXPECT_THAT(*text, ::testing::ContainsRegex("undecodable-image +3\n"));
  EXPECT_THAT(*text, ::testing::ContainsRegex("unknown +2\n"));
  EXPECT_THAT(*text, ::testing::ContainsRegex("2025-11-26T10:00:00Z +3\n"));
}

TEST(DlqStatsTest, ATopicThatDoesNotExistIsNotFound) {
  auto counts = CountLetters({.topics = {UniqueTopic("no-such-dlq")}});
  ASSERT_FALSE(counts);
  EXPECT_EQ(counts.error().code(), Error::Code::kNotFound);
  EXPECT_THAT(counts.error().message(), HasSubstr("does not exist"));
}

TEST(DlqShowTest, NewestFirstFilteredAndEscaped) {
  const std::string dlq = UniqueTopic("show-dlq"), images = UniqueTopic("show-images");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 2}}));
  WireMessage nasty = ImageMessage("n<script>alert(1)</script>", "7");
  nasty.key = "7";
  nasty.value = "SECRET-PAYLOAD \x1b]0;pwned\x07";
  nasty.headers.push_back({"x-note", "\x1b[2J\x1b[31mred</td>"});
  kafka::OutputMessage bad = DeadLetterOf(dlq, images, 9, nasty, DeadLetterReason::kInvalidImage, kTen + 4 * kHour);
  for (auto& header : bad.message.headers) {
    if (header.name == "error") header.value = "key '\x1b[1m7' <b>bold</b>";
  }
  ASSERT_NO_FATAL_FAILURE(WriteAll({
      DeadLetterOf(dlq, images, 1, ImageMessage("oldest", "1"), DeadLetterReason::kTooLarge, kTen),
      DeadLetterOf(dlq, images, 2, ImageMessage("middle", "1"), DeadLetterReason::kUndecodableImage, kTen + kHour),
      DeadLetterOf(dlq, images, 3, ImageMessage("newer", "2"), DeadLetterReason::kTooLarge, kTen + 2 * kHour),
      DeadLetterOf(dlq, images, 4, ImageMessage("newest-large", "1"), DeadLetterReason::kTooLarge, kTen + 3 * kHour),
      bad,
  }));

  auto all = ShowText({.topics = {dlq}, .limit = 2});
  ASSERT_OK(all);
  EXPECT_THAT(*all, HasSubstr("5 letters match; the 2 newest, newest first"));
  const size_t first = all->find("n\\x3cscript"), second = all->find("newest-large");
  ASSERT_NE(first, std::string::npos) << *all;
  ASSERT_NE(second, std::string::npos) << *all;
  EXPECT_LT(first, second);
  EXPECT_THAT(*all, Not(HasSubstr("oldest")));
  // Nothing from the letter reaches the terminal raw, and the payload not at all.
  EXPECT_EQ(all->find('\x1b'), std::string::npos);
  EXPECT_EQ(all->find('\x07'), std::string::npos);
  EXPECT_EQ(all->find('<'), std::string::npos);
  EXPECT_THAT(*all, Not(HasSubstr("SECRET")));
  EXPECT_THAT(*all, HasSubstr("key '\\x1b[1m7' \\x3cb\\x3ebold\\x3c/b\\x3e"));
  EXPECT_THAT(*all, HasSubstr("x-note: \"\\x1b[2J\\x1b[31mred\\x3c/td\\x3e\""));
  EXPECT_THAT(*all, HasSubstr(fmt::format("payload    {} bytes (not shown)", nasty.value.size())));
  EXPECT_THAT(*all, HasSubstr("reason     invalid-image"));
  EXPECT_THAT(*all, HasSubstr("failed-at  2025-11-26T14:00:00Z"));
  EXPECT_THAT(*all, HasSubstr("source     " + images + "/0/9"));
  EXPECT_THAT(*all, HasSubstr("producer   7"));

  auto large = ShowText({.topics = {dlq}, .selection = {.reasons = {"too-large"}, .producers = {"1"}}});
  ASSERT_OK(large);
  EXPECT_THAT(*large, HasSubstr("2 letters match; all shown"));
  EXPECT_LT(large->find("newest-large"), large->find("oldest"));
  EXPECT_THAT(*large, Not(HasSubstr("middle")));
  EXPECT_THAT(*large, Not(HasSubstr("newer")));

  auto none = ShowText({.topics = {dlq}, .selection = {.reasons = {"id-conflict"}}});
  ASSERT_OK(none);
  EXPECT_THAT(*none, HasSubstr("0 letters match"));

  auto bad_reason = ShowText({.topics = {dlq}, .selection = {.reasons = {"<b>too-big"}}});
  ASSERT_FALSE(bad_reason);
  EXPECT_EQ(bad_reason.error().code(), Error::Code::kInvalidInput);
  EXPECT_THAT(bad_reason.error().message(), HasSubstr("\\x3cb\\x3etoo-big' is no reason code; they are: "));
}

// Replayed to where each came from, with its own headers and `replayed-from`; a second replay
// finds each letter replayed and sends nothing. Letters that cannot be replayed are counted.
TEST(DlqReplayTest, EachLetterGoesBackOnceWithItsHeadersAndASecondRunSendsNothing) {
  const std::string dlq = UniqueTopic("replay-dlq"), images = UniqueTopic("replay-images"),
                    inferences = UniqueTopic("replay-inferences");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 3}, {images, 2}, {inferences, 2}}));
  std::vector<kafka::OutputMessage> letters = ImageLetters(dlq, images, 4);
  letters.push_back(
      DeadLetterOf(dlq, images, 50, LargeImageMessage("dropped", "1"), DeadLetterReason::kTooLarge, kTen, kSmallDlq));
  letters.push_back({dlq, {"", "junk", {}}});
  // A record sink dead-lettered goes back to the inferences topic it came from.
  letters.push_back(DeadLetterOf(dlq, inferences, 3, {"5", R"({"id":"rec","producer_id":5})", {{"id", "rec"}}},
                                 DeadLetterReason::kStoreRefused, kTen));
  ASSERT_NO_FATAL_FAILURE(WriteAll(letters));

  auto dry = Replay({.topic = dlq, .dry_run = true});
  ASSERT_OK(dry);
  EXPECT_EQ(dry->replayed, 5);
  EXPECT_EQ(dry->listed.size(), 5u);
  auto markers = kafka::PartitionCount({}, dlq + ".replayed");
  ASSERT_FALSE(markers) << "a dry run creates nothing";
  EXPECT_EQ(markers.error().code(), Error::Code::kNotFound);

  auto first = Replay(ReplayOf(dlq));
  ASSERT_OK(first);
  EXPECT_EQ(first->letters, 7);
  EXPECT_EQ(first->chosen, 7);
  EXPECT_EQ(first->replayed, 5);
  EXPECT_EQ(first->to_topics, (std::map<std::string, int64_t>{{images, 4}, {inferences, 1}}));
  EXPECT_EQ(first->no_payload, 1);
  EXPECT_EQ(first->no_source, 1);
  EXPECT_EQ(first->already, 0);
  EXPECT_EQ(first->transactions, 1);
  ASSERT_NO_FATAL_FAILURE(ExpectEachReplayedOnce(images, Ids(4), dlq));
  const auto records = ReadAll(inferences, 1, std::chrono::seconds(1));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].value, R"({"id":"rec","producer_id":5})");
  EXPECT_THAT(*records[0].FindHeader("replayed-from"), ::testing::StartsWith(dlq + "/"));

  auto second = Replay(ReplayOf(dlq));
  ASSERT_OK(second);
  EXPECT_EQ(second->replayed, 0);
  EXPECT_EQ(second->already, 5);
  EXPECT_EQ(second->transactions, 0);
  ASSERT_NO_FATAL_FAILURE(ExpectEachReplayedOnce(images, Ids(4), dlq));
  EXPECT_EQ(ReadAll(inferences, 1, std::chrono::seconds(1)).size(), 1u);

  auto text = ReplayText({.topic = dlq, .dry_run = true});
  ASSERT_OK(text);
  EXPECT_THAT(*text, ::testing::ContainsRegex("would replay +0\n"));
  EXPECT_THAT(*text, ::testing::ContainsRegex("replayed before +5\n"));
}

// How many records `topic` holds, aborted and open transactions' included, reading until
// `expected` came or 30 s passed, then 1 s more.
size_t UncommittedCount(const std::string& topic, size_t expected) {
  rd_kafka_t* rk = iotinfer::testing::SubscribeFromStart(topic, "uncommitted", iotinfer::testing::kTestBrokers,
                                                         {{"isolation.level", "read_uncommitted"}});
  size_t count = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto until = deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (count >= expected && until == deadline) until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (!m->err) count++;
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return count;
}

// Forks a process that runs Replay with `options` and returns its exit status; librdkafka's
// threads must not be running at the fork, so the parent holds no client then.
int ReplayInChild(const ReplayOptions& options) {
  EXPECT_EQ(rd_kafka_wait_destroyed(10000), 0) << "a Kafka client of the test is still alive";
  const pid_t pid = fork();
  if (pid == 0) {
    const Result<ReplayReport> report = Replay(options);
    if (!report) std::fprintf(stderr, "child: %s\n", report.error().message().c_str());
    _exit(report ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A replay that dies inside a transaction (its messages written, not committed), then one that
// dies right after a commit, then one that finishes: each letter is in `images` exactly once.
TEST(DlqReplayTest, ReplaysKilledInsideATransactionAndBetweenTwoStillSendEachLetterOnce) {
  const std::string dlq = UniqueTopic("killed-dlq"), images = UniqueTopic("killed-images");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 2}, {images, 2}}));
  constexpr int kLetters = 9;
  ASSERT_NO_FATAL_FAILURE(WriteAll(ImageLetters(dlq, images, kLetters)));

  ReplayOptions options = ReplayOf(dlq);
  options.letters_per_transaction = 2;
  options.before_commit = [](int transaction) {
    if (transaction == 2) _exit(42);
  };
  ASSERT_EQ(ReplayInChild(options), 42);
  // The open transaction's records reached the log: the dead run left them there.
  EXPECT_EQ(UncommittedCount(images, 4), 4u);

  options.before_commit = {};
  options.after_commit = [](int transaction) {
    if (transaction == 1) _exit(43);
  };
  ASSERT_EQ(ReplayInChild(options), 43);

  options.after_commit = {};
  auto last = Replay(options);
  ASSERT_OK(last);
  EXPECT_EQ(last->already, 4) << "two transactions committed before";
  EXPECT_EQ(last->replayed, kLetters - 4);
  ASSERT_NO_FATAL_FAILURE(ExpectEachReplayedOnce(images, Ids(kLetters), dlq));
}

// Replays with different filters: each takes only its letters, and leaves the others to a
// later run, which still never sends one twice.
TEST(DlqReplayTest, AFilteredReplayLeavesTheOtherLettersForALaterRun) {
  const std::string dlq = UniqueTopic("filtered-dlq"), images = UniqueTopic("filtered-images");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 2}, {images, 2}}));
  std::vector<kafka::OutputMessage> letters = ImageLetters(dlq, images, 6, DeadLetterReason::kTooLarge);
  for (int i = 6; i < 9; ++i) {
    letters.push_back(DeadLetterOf(dlq, images, 100 + i, ImageMessage(fmt::format("img-{}", i), "5"),
                                   DeadLetterReason::kUndecodableImage, kTen + kHour + i));
  }
  ASSERT_NO_FATAL_FAILURE(WriteAll(letters));

  ReplayOptions options = ReplayOf(dlq);
  options.selection = {.reasons = {"too-large"}, .producers = {"0"}};
  auto producer0 = Replay(options);
  ASSERT_OK(producer0);
  EXPECT_EQ(producer0->chosen, 2);  // img-0, img-3
  EXPECT_EQ(producer0->replayed, 2);
  options.selection = {.reasons = {"too-large"}};
  auto large = Replay(options);
  ASSERT_OK(large);
  EXPECT_EQ(large->chosen, 6);
  EXPECT_EQ(large->already, 2);
  EXPECT_EQ(large->replayed, 4);
  options.selection = {.since = "2025-11-26T11:00Z"};
  auto later = Replay(options);
  ASSERT_OK(later);
  EXPECT_EQ(later->chosen, 3);
  EXPECT_EQ(later->replayed, 3);
  options.selection = {};
  auto all = Replay(options);
  ASSERT_OK(all);
  EXPECT_EQ(all->replayed, 0);
  EXPECT_EQ(all->already, 9);
  ASSERT_NO_FATAL_FAILURE(ExpectEachReplayedOnce(images, Ids(9), dlq));
}

// A message the target topic refuses (over its max.message.bytes) fails its transaction; alone,
// the others go and it is counted as refused, with no marker: a later run can still send it.
TEST(DlqReplayTest, AMessageTheTargetRefusesIsCountedAndLeftForALaterRun) {
  const std::string dlq = UniqueTopic("refused-dlq"), small = UniqueTopic("refused-images"),
                    large = UniqueTopic("roomy-images");
  ASSERT_OK(kafka::EnsureTopics(
      {}, {{dlq, 1}, {.name = small, .partitions = 1, .configs = {{"max.message.bytes", "1000"}}}, {large, 1}}));
  std::vector<kafka::OutputMessage> letters = ImageLetters(dlq, small, 3);
  letters[1].message.value.assign(3000, 'x');
  ASSERT_NO_FATAL_FAILURE(WriteAll(letters));

  ReplayOptions options = ReplayOf(dlq);
  // One record a batch, one batch in flight: the topic's limit is then the record's, and no
  // request waits behind the refused one.
  options.kafka.properties["producer.batch.num.messages"] = "1";
  options.kafka.properties["producer.max.in.flight.requests.per.connection"] = "1";
  auto first = Replay(options);
  ASSERT_OK(first);
  EXPECT_EQ(first->replayed, 2);
  EXPECT_EQ(first->refused, 1);
  EXPECT_THAT(first->refusal, ::testing::StartsWith(dlq + "/0/1: "));
  EXPECT_THAT(first->refusal, HasSubstr("too large"));
  const auto by_id = ById(small, 2);
  EXPECT_EQ(by_id.size(), 2u);
  EXPECT_FALSE(by_id.contains("img-1"));

  options.to = large;
  auto later = Replay(options);
  ASSERT_OK(later);
  EXPECT_EQ(later->already, 2);
  EXPECT_EQ(later->replayed, 1);
  EXPECT_EQ(later->refused, 0);
  const auto roomy = ReadAll(large, 1, std::chrono::seconds(1));
  ASSERT_EQ(roomy.size(), 1u);
  EXPECT_EQ(*roomy[0].FindHeader("id"), "img-1");
}

TEST(DlqReplayTest, NowhereToSendIsAClearError) {
  const std::string dlq = UniqueTopic("nowhere-dlq"), gone = UniqueTopic("gone-images");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 1}}));
  ASSERT_NO_FATAL_FAILURE(WriteAll(ImageLetters(dlq, gone, 2)));
  auto missing_source = Replay(ReplayOf(dlq));
  ASSERT_FALSE(missing_source);
  EXPECT_EQ(missing_source.error().code(), Error::Code::kNotFound);
  EXPECT_THAT(missing_source.error().message(), HasSubstr("the topic to replay into"));
  ReplayOptions into_itself = ReplayOf(dlq);
  into_itself.to = dlq;
  auto itself = Replay(into_itself);
  ASSERT_FALSE(itself);
  EXPECT_EQ(itself.error().code(), Error::Code::kInvalidInput);
  auto no_dlq = Replay(ReplayOf(UniqueTopic("no-such-dlq")));
  ASSERT_FALSE(no_dlq);
  EXPECT_EQ(no_dlq.error().code(), Error::Code::kNotFound);
}

// The real path: infer dead-letters images over its payload limit and a corrupt one; the
// too-large ones are replayed once the limit is raised, and infer classifies each of them once.
TEST(DlqReplayTest, ImagesInferRefusedAsTooLargeAreInferredOnceAfterAReplay) {
  const std::string images = UniqueTopic("e2e-images"), inferences = UniqueTopic("e2e-inferences"),
                    dlq = UniqueTopic("e2e-dlq");
  ASSERT_OK(kafka::EnsureTopics({}, {{images, 2}, {inferences, 2}, {dlq, 2}}));
  std::vector<kafka::OutputMessage> sent;
  for (int i = 0; i < 8; ++i) {
    // 40x40 raw: 1,600 bytes, under the limit; 50x50: 2,500, over it.
    const int side = i < 5 ? 40 : 50;
    auto m = EncodeImageMessage({fmt::format("img-{}", i), i % 2, std::string("Bag"), std::nullopt,
                                 Image{side, side, 1, std::vector<uint8_t>(side * side, 7)}},
                                {.encoding = ImageEncoding::kRaw});
    ASSERT_OK(m);
    sent.push_back({images, *m});
  }
  WireMessage corrupt = sent[0].message;
  corrupt.value.resize(10);
  corrupt.headers[0].value = "corrupt";
  sent.push_back({images, corrupt});
  ASSERT_NO_FATAL_FAILURE(WriteAll(sent));

  infer::InferOptions options;
  options.group = UniqueTopic("e2e-group");
  options.input_topic = images;
  options.output_topic = inferences;
  options.dlq_topic = dlq;
  options.partitions = 2;
  options.log_every = std::chrono::milliseconds(0);
  options.classifier.threads = 1;
  options.limits.max_payload_bytes = 2000;
  auto refused = iotinfer::testing::RunInferUntil(options, 9, std::chrono::seconds(90));
  ASSERT_OK(refused);
  EXPECT_EQ(refused->inferred, 5);
  EXPECT_EQ(refused->dead_lettered_by_reason[kafka::ReasonIndex(DeadLetterReason::kTooLarge)], 3);
  EXPECT_EQ(refused->dead_lettered_by_reason[kafka::ReasonIndex(DeadLetterReason::kUndecodableImage)], 1);

  auto counts = CountLetters({.topics = {dlq}});
  ASSERT_OK(counts);
  EXPECT_EQ(counts->front().by_reason, (std::map<std::string, int64_t>{{"too-large", 3}, {"undecodable-image", 1}}));

  ReplayOptions replay = ReplayOf(dlq);
  replay.selection.reasons = {"too-large"};
  auto replayed = Replay(replay);
  ASSERT_OK(replayed);
  EXPECT_EQ(replayed->replayed, 3);
  EXPECT_EQ(replayed->to_topics, (std::map<std::string, int64_t>{{images, 3}}));

  options.limits.max_payload_bytes = 1 << 20;
  auto accepted = iotinfer::testing::RunInferUntil(options, 3, std::chrono::seconds(90));
  ASSERT_OK(accepted);
  EXPECT_EQ(accepted->inferred, 3);
  EXPECT_EQ(accepted->dead_lettered, 0);
  std::map<std::string, int> inferred;
  for (const WireMessage& m : ReadAll(inferences, 8, std::chrono::seconds(2))) {
    inferred[nlohmann::json::parse(m.value)["id"].get<std::string>()]++;
  }
  std::map<std::string, int> want;
  for (int i = 0; i < 8; ++i) want[fmt::format("img-{}", i)] = 1;
  EXPECT_EQ(inferred, want);
}

// The command line: usage errors exit 2 with a message, a cluster that cannot be reached 1;
// garbage letters are shown, not fatal.
TEST(DlqCommandTest, BadInputSaysWhatIsWrong) {
  const std::string dlq = UniqueTopic("cli-dlq"), missing = UniqueTopic("cli-missing");
  ASSERT_OK(kafka::EnsureTopics({}, {{dlq, 1}}));
  ASSERT_NO_FATAL_FAILURE(WriteAll({{dlq, {"\x1b[31m", "\x1b[2J", {{"reason", "\x1b]0;x\x07"}}}}}));

  struct Case {
    std::string args;
    int exit_code;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"stats --topic " + missing, 2, "topic " + missing + " does not exist"},
           {"show --topic " + dlq + " --reason nope", 2, "--reason 'nope' is no reason code"},
           {"show --topic " + dlq + " --producer 3x", 2, "--producer '3x' is neither"},
           {"show --topic " + dlq + " --since soon", 2, "--since: 'soon' is not a time"},
           {"stats --topic " + dlq + " --since 2025-11-27 --until 2025-11-26", 2, "is not before"},
           {"stats --topic " + dlq + " --bucket 10ms", 2, "shorter than a second"},
           {"replay --topic " + missing, 2, "does not exist"},
           {"replay --topic " + dlq + " --to " + missing, 2, "the topic to replay into"},
           {"replay --topic " + dlq + " --to " + dlq, 2, "will not replay"},
           {"stats --brokers 127.0.0.1:1 --topic " + dlq, 1, "iotinfer: "},
           {"show --topic " + dlq, 0, "1 letter match"},
           {"stats --topic " + dlq, 0, "1 dead letter (0 without its payload, 1 with missing or malformed"},
           {"replay --dry-run --topic " + dlq, 0, "no source"},
       }) {
    const auto run = Iotinfer("dlq " + c.args, 120);
    EXPECT_EQ(run.exit_code, c.exit_code) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.says)) << c.args;
    EXPECT_EQ(run.output.find('\x1b'), std::string::npos) << c.args << ": a raw escape reached the terminal";
  }
}

}  // namespace
}  // namespace iotinfer::dlq
