#include "dlq/letter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kafka/dead_letter.h"
#include "test_util.h"

namespace iotinfer::dlq {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

namespace h = kafka::dead_letter_headers;

kafka::InputMessage Original(std::string key, std::string value, std::vector<WireMessage::Header> headers) {
  return {.message = {std::move(key), std::move(value), std::move(headers)},
          .topic = "images",
          .partition = 3,
          .offset = 42};
}

// A dead letter as infer writes it, read back from where it sits in its topic.
kafka::InputMessage Stored(const kafka::OutputMessage& out, int32_t partition = 1, int64_t offset = 7) {
  return {.message = out.message, .topic = out.topic, .partition = partition, .offset = offset, .timestamp_ms = 5};
}

const std::vector<WireMessage::Header> kImageHeaders = {
    {"id", "img-1"}, {"producer_id", "3"}, {"content-type", "image/png"}, {"label", "Bag"}};

TEST(PositionTest, ParsesWhatItFormats) {
  const Position p{"images.dlq", 5, 123456789012};
  EXPECT_EQ(FormatPosition(p), "images.dlq/5/123456789012");
  auto parsed = ParsePosition(FormatPosition(p));
  ASSERT_OK(parsed);
  EXPECT_EQ(*parsed, p);
}

TEST(PositionTest, RefusesWhatIsNoPosition) {
  for (const char* bad :
       {"", "images", "images/1", "/1/2", "images//2", "images/1/", "images/-1/2", "images/1/+2", "images/1/2x",
        "im ages/1/2", "im/ages/1/2", "images/99999999999/2", "../1/2", "images/1/99999999999999999999"}) {
    auto parsed = ParsePosition(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code(), Error::Code::kInvalidInput) << bad;
  }
}

TEST(ReadLetterTest, ReadsBackWhatDeadLetterWrote) {
  const auto out = kafka::DeadLetter("images.dlq", Original("3", "png bytes", kImageHeaders),
                                     kafka::DeadLetterReason::kUndecodableImage, "corrupt PNG: bad CRC");
  const Letter letter = ReadLetter(Stored(out));
  EXPECT_EQ(letter.at, (Position{"images.dlq", 1, 7}));
  EXPECT_EQ(letter.reason, kafka::DeadLetterReason::kUndecodableImage);
  EXPECT_EQ(ReasonLabel(letter), "undecodable-image");
  EXPECT_EQ(letter.error, "corrupt PNG: bad CRC");
  ASSERT_TRUE(letter.source);
  EXPECT_EQ(*letter.source, (Position{"images", 3, 42}));
  ASSERT_TRUE(letter.failed_at_us);
  EXPECT_EQ(std::to_string(*letter.failed_at_us), *out.message.FindHeader("failed-at"));
  EXPECT_EQ(letter.producer, 3);
  EXPECT_FALSE(letter.payload_dropped);
  EXPECT_EQ(letter.payload_bytes, 9u);
  EXPECT_THAT(letter.problems, ::testing::IsEmpty());
  ASSERT_EQ(letter.original_headers.size(), kImageHeaders.size());
  for (size_t i = 0; i < kImageHeaders.size(); ++i) EXPECT_EQ(letter.original_headers[i].name, kImageHeaders[i].name);
  EXPECT_EQ(letter.dead_letter_headers.size(), 4u);
  EXPECT_TRUE(letter.Replayable());
}

TEST(ReadLetterTest, LettersWithoutTheirPayloadOrOriginalAreNotReplayable) {
  const auto dropped = kafka::DeadLetter("images.dlq", Original("3", std::string(5000, 'x'), kImageHeaders),
                                         kafka::DeadLetterReason::kTooLarge, "too big", 4000);
  const Letter no_payload = ReadLetter(Stored(dropped));
  EXPECT_TRUE(no_payload.payload_dropped);
  EXPECT_EQ(no_payload.reason, kafka::DeadLetterReason::kTooLarge);
  EXPECT_EQ(no_payload.original_headers.size(), kImageHeaders.size());
  EXPECT_FALSE(no_payload.Replayable());

  const auto bare = kafka::DeadLetter("dlq", Original(std::string(3000, 'k'), "v", {{"h", std::string(3000, 'h')}}),
                                      kafka::DeadLetterReason::kCommitFailed, "why", 4000);
  const Letter nothing = ReadLetter(Stored(bare));
  EXPECT_TRUE(nothing.payload_dropped);
  EXPECT_TRUE(nothing.original_headers.empty());
  EXPECT_EQ(nothing.reason, kafka::DeadLetterReason::kCommitFailed);
  EXPECT_TRUE(nothing.source);
  EXPECT_FALSE(nothing.Replayable());

  kafka::InputMessage unreadable{.topic = "images", .partition = 0, .offset = 9};
  const Letter unread = ReadLetter(
      Stored(kafka::DeadLetter("images.dlq", unreadable, kafka::DeadLetterReason::kUnreadableRecord, "corrupt")));
  EXPECT_TRUE(unread.source);
  EXPECT_FALSE(unread.payload_dropped);
  EXPECT_FALSE(unread.Replayable());
}

// A device may send a header named like one of a dead letter's: only the run DeadLetter
// appended at the end is the dead letter's.
TEST(ReadLetterTest, ADevicesOwnHeaderOfADeadLetterNameStaysTheDevices) {
  std::vector<WireMessage::Header> headers = kImageHeaders;
  headers.push_back({"error", "the device's own"});
  headers.push_back({"source", "camera-7"});
  const auto out =
      kafka::DeadLetter("images.dlq", Original("3", "v", headers), kafka::DeadLetterReason::kInvalidImage, "bad");
  const Letter letter = ReadLetter(Stored(out));
  EXPECT_EQ(letter.error, "bad");
  ASSERT_TRUE(letter.source);
  EXPECT_EQ(letter.source->topic, "images");
  EXPECT_EQ(letter.original_headers.size(), headers.size());
  const WireMessage replay = ReplayMessage(Stored(out));
  EXPECT_EQ(*replay.FindHeader("error"), "the device's own");
  EXPECT_EQ(*replay.FindHeader("source"), "camera-7");
}

// Letters written before reason codes existed have no `reason`: unknown, but otherwise whole.
TEST(ReadLetterTest, ALetterWithoutAReasonIsUnknownAndStillReplayable) {
  WireMessage m{"3", "v", kImageHeaders};
  m.headers.push_back({"error", "old"});
  m.headers.push_back({"failed-at", "1764151200000000"});
  m.headers.push_back({"source", "images/0/1"});
  const Letter letter = ReadLetter({.message = m, .topic = "images.dlq"});
  EXPECT_EQ(letter.reason, std::nullopt);
  EXPECT_EQ(ReasonLabel(letter), "unknown");
  EXPECT_EQ(letter.error, "old");
  EXPECT_EQ(letter.failed_at_us, 1764151200000000);
  EXPECT_THAT(letter.problems, ::testing::IsEmpty());
  EXPECT_TRUE(letter.Replayable());
}

TEST(ReadLetterTest, GarbageIsReadWithoutTrustingIt) {
  // No headers at all.
  const Letter empty = ReadLetter({.message = {"", "", {}}, .topic = "images.dlq", .timestamp_ms = 1000});
  EXPECT_FALSE(empty.source);
  EXPECT_EQ(empty.producer, std::nullopt);
  EXPECT_EQ(ProducerLabel(empty), "unknown");
  EXPECT_EQ(empty.failed_at_us, 1'000'000) << "the record's own timestamp stands in";
  EXPECT_THAT(empty.problems, ::testing::Contains(HasSubstr("none of the headers")));
  EXPECT_FALSE(empty.Replayable());

  // Every dead-letter header there, every value wrong; the producer id is text.
  const WireMessage wrong{"\x1b[31mred",
                          "",
                          {{"producer_id", "3; rm -rf /"},
                           {"error", "e"},
                           {"reason", "<script>alert(1)</script>"},
                           {"failed-at", "yesterday"},
                           {"source", "images/three/4"}}};
  const Letter letter = ReadLetter({.message = wrong, .topic = "images.dlq"});
  EXPECT_EQ(letter.reason, std::nullopt);
  EXPECT_EQ(ReasonLabel(letter), "unknown");
  EXPECT_EQ(letter.failed_at_us, std::nullopt);
  EXPECT_FALSE(letter.source);
  EXPECT_EQ(letter.producer, std::nullopt);
  EXPECT_EQ(letter.problems.size(), 3u);
  // A number, but past any calendar's end; the record's own timestamp likewise.
  const Letter far = ReadLetter({.message = {"", "", {{"error", "e"}, {"failed-at", "9223372036854775807"}}},
                                 .topic = "images.dlq",
                                 .timestamp_ms = 9223372036854775});
  EXPECT_EQ(far.failed_at_us, std::nullopt);
  for (const std::string& problem : letter.problems) {
    EXPECT_THAT(problem, Not(HasSubstr("<"))) << "problems quote the input escaped";
    EXPECT_THAT(problem, Not(HasSubstr("\x1b")));
  }
}

TEST(ReadLetterTest, TheProducerComesFromTheHeaderTheKeyOrTheRecord) {
  auto producer = [](std::string key, std::string value, std::vector<WireMessage::Header> headers) {
    return ReadLetter(Original(std::move(key), std::move(value), std::move(headers))).producer;
  };
  EXPECT_EQ(producer("9", "", {{"producer_id", "3"}}), 3);
  EXPECT_EQ(producer("9", "", {{"producer_id", "x"}}), 9);
  EXPECT_EQ(producer("", R"({"id":"a","producer_id":12,"image_prediction":5})", {}), 12);
  EXPECT_EQ(producer("", R"({"producer_id":-1})", {}), std::nullopt);
  EXPECT_EQ(producer("", R"({"producer_id":"12"})", {}), std::nullopt);
  EXPECT_EQ(producer("2147483648", "", {}), std::nullopt);
  EXPECT_EQ(producer("2147483647", "", {}), 2147483647);
  EXPECT_EQ(producer(" 4", "{not json", {}), std::nullopt);
}

TEST(ReplayMessageTest, TheOriginalWithReplayedFromInsteadOfTheDeadLettersHeaders) {
  std::vector<WireMessage::Header> headers = kImageHeaders;
  headers.push_back({"replayed-from", "images.dlq/0/1"});  // replayed once before, and dead again
  const auto out = kafka::DeadLetter("images.dlq", Original("3", "png bytes", headers),
                                     kafka::DeadLetterReason::kTooLarge, "too big");
  const WireMessage replay = ReplayMessage(Stored(out, 4, 99));
  EXPECT_EQ(replay.key, "3");
  EXPECT_EQ(replay.value, "png bytes");
  std::vector<WireMessage::Header> want = kImageHeaders;
  want.push_back({"replayed-from", "images.dlq/4/99"});
  ASSERT_EQ(replay.headers.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(replay.headers[i].name, want[i].name);
    EXPECT_EQ(replay.headers[i].value, want[i].value);
  }
  for (const std::string_view name : {h::kError, h::kReason, h::kFailedAt, h::kSource}) {
    EXPECT_EQ(replay.FindHeader(name), nullptr) << name;
  }
}

TEST(EscapeTest, OnlyPrintableAsciiPassesAsItIs) {
  EXPECT_EQ(Escape("plain text: 1/2 (ok)"), "plain text: 1/2 (ok)");
  EXPECT_EQ(Escape("<script>"), "\\x3cscript\\x3e");
  EXPECT_EQ(Escape("a\x1b[2Jb\r\n\t"), "a\\x1b[2Jb\\x0d\\x0a\\x09");
  EXPECT_EQ(Escape("\"q\" \\ &"), "\\x22q\\x22 \\x5c \\x26");
  EXPECT_EQ(Escape("caf\xc3\xa9 \x7f"), "caf\\xc3\\xa9 \\x7f");
  EXPECT_EQ(Escape(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(Escape("abcdef", 3), "abc...(6 bytes)");
}

TEST(TimeTest, ParsesDatesTimesAndDurationsAgo) {
  const int64_t day = 1764115200'000000;  // 2025-11-26T00:00:00Z
  EXPECT_EQ(ParseTime("2025-11-26", 0), day);
  EXPECT_EQ(ParseTime("2025-11-26T10:30", 0), day + (10 * 3600 + 30 * 60) * 1'000'000LL);
  EXPECT_EQ(ParseTime("2025-11-26T10:30:15Z", 0), day + (10 * 3600 + 30 * 60 + 15) * 1'000'000LL);
  EXPECT_EQ(ParseTime("2025-11-26 10:30:15", 0), day + (10 * 3600 + 30 * 60 + 15) * 1'000'000LL);
  EXPECT_EQ(ParseTime("2h", day), day - 7200 * 1'000'000LL);
  EXPECT_EQ(ParseTime("90", day), day - 90 * 1'000'000LL);
  for (const char* bad : {"", "yesterday", "2025-13-01", "2025-02-30", "2025-11-26T24:00", "2025-11-26T10",
                          "2025-11-26X10:00", "2025-11-26T10:00:00+01:00", "-2h", " 2025-11-26", "2025-11-26T10:60"}) {
    auto parsed = ParseTime(bad, day);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code(), Error::Code::kInvalidInput) << bad;
  }
}

TEST(TimeTest, FormatsUtc) {
  EXPECT_EQ(FormatTime(1764151230'000000), "2025-11-26T10:00:30Z");
  EXPECT_EQ(FormatTime(1764151230'000042, true), "2025-11-26T10:00:30.000042Z");
  EXPECT_EQ(FormatTime(1764151230'000042), "2025-11-26T10:00:30Z");
  EXPECT_EQ(FormatTime(-1'000000), "1969-12-31T23:59:59Z");
}

}  // namespace
}  // namespace iotinfer::dlq
