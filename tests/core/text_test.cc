#include "core/text.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/results.h"

namespace iotinfer {
namespace {

using std::chrono::milliseconds;

TEST(TextTest, DurationsInEveryUnit) {
  EXPECT_EQ(ParseDuration("10s").value(), milliseconds(10'000));
  EXPECT_EQ(ParseDuration("500ms").value(), milliseconds(500));
  EXPECT_EQ(ParseDuration("2m").value(), milliseconds(120'000));
  EXPECT_EQ(ParseDuration("2min").value(), milliseconds(120'000));
  EXPECT_EQ(ParseDuration("1h").value(), milliseconds(3'600'000));
  EXPECT_EQ(ParseDuration("1.5").value(), milliseconds(1'500));
  EXPECT_EQ(ParseDuration("0").value(), milliseconds(0));
}

TEST(TextTest, MalformedDurationsAreInvalidInputNamingTheText) {
  for (const char* text : {"", "5q", "soon", "-1s", "s", "10 s", "1e"}) {
    auto parsed = ParseDuration(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().code(), Error::Code::kInvalidInput) << text;
    EXPECT_NE(parsed.error().message().find(std::string("'") + text + "'"), std::string::npos) << text;
  }
}

TEST(TextTest, KeyValueSplitsAtTheFirstEquals) {
  auto kv = ParseKeyValue("sasl.jaas.config=a=b", "--flag").value();
  EXPECT_EQ(kv.first, "sasl.jaas.config");
  EXPECT_EQ(kv.second, "a=b");
  EXPECT_EQ(ParseKeyValue("key=", "--flag").value().second, "");
  for (const char* text : {"novalue", "=value", ""}) {
    auto parsed = ParseKeyValue(text, "--spark-kafka");
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().message(), std::string("--spark-kafka '") + text + "': expected KEY=VALUE");
  }
}

TEST(ResultsTest, IncorrectMeansLabelledAndPredictedOtherwise) {
  EXPECT_TRUE(IsIncorrect("Bag", std::string("Coat")));
  EXPECT_FALSE(IsIncorrect("Bag", std::string("Bag")));
  EXPECT_FALSE(IsIncorrect("Bag", std::nullopt));
  ProducerCounts counts{.producer_id = 3};
  counts.Add("Bag", std::string("Coat"), 2);
  counts.Add("Bag", std::string("Bag"));
  counts.Add("Bag", std::nullopt, 4);
  EXPECT_EQ(counts, (ProducerCounts{.producer_id = 3, .incorrect_count = 2, .total = 7, .unlabelled = 4}));
  const ProducerResult result = ToResult(counts, 9);
  EXPECT_DOUBLE_EQ(result.error_rate, 2.0 / 3.0);
  EXPECT_EQ(result.computed_at_us, 9);
}

TEST(ResultsTest, VerdictsHaveOneNameEach) {
  for (Verdict v : {Verdict::kUnknown, Verdict::kHealthy, Verdict::kSuspect, Verdict::kFaulty}) {
    EXPECT_EQ(ParseVerdict(VerdictName(v)), v);
  }
  EXPECT_EQ(VerdictName(Verdict::kFaulty), "faulty");
  EXPECT_FALSE(ParseVerdict("Faulty"));
  EXPECT_FALSE(ParseVerdict(""));
}

TEST(TextTest, TimesAreIsoUtcToTheMillisecond) {
  EXPECT_EQ(FormatUtc(1'800'000'000'123'456), "2027-01-15T08:00:00.123Z");
  EXPECT_EQ(FormatUtc(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(ParseUtc("2027-01-15T08:00:00.123Z"), 1'800'000'000'123'000);
  EXPECT_EQ(ParseUtc("2027-01-15T08:00:00.123456Z"), 1'800'000'000'123'456);
  EXPECT_EQ(ParseUtc("2027-01-15T08:00:00Z"), 1'800'000'000'000'000);
  EXPECT_EQ(ParseUtc("2024-02-29T23:59:59.5Z"), 1'709'251'199'500'000);
  for (const char* bad : {"", "2027-01-15", "2027-01-15T08:00:00", "2027-01-15T08:00:00.Z", "2027-02-30T00:00:00Z",
                          "2027-01-15T24:00:00Z", "2027-01-15 08:00:00Z", "+027-01-15T08:00:00Z",
                          "2027-01-15T08:00:00.123Zjunk", "2027-1-15T08:00:00Z"}) {
    EXPECT_FALSE(ParseUtc(bad)) << bad;
  }
}

TEST(TextTest, ASecretFileLosesOnlyItsTrailingLineBreaks) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "iotinfer-secret-test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "token") << " tok en\r\n\n";
  EXPECT_EQ(ReadSecretFile((dir / "token").string(), "token").value(), " tok en");
  std::ofstream(dir / "empty") << "\n";
  for (const char* name : {"empty", "missing"}) {
    auto refused = ReadSecretFile((dir / name).string(), "Spark Connect token");
    ASSERT_FALSE(refused) << name;
    EXPECT_EQ(refused.error().code(), Error::Code::kInvalidInput);
    EXPECT_NE(refused.error().message().find("Spark Connect token file"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace iotinfer
