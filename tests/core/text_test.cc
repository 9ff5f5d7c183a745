#include "core/text.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace iotinfer
