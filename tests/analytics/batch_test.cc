#include "analytics/batch.h"

#include <gtest/gtest.h>

#include "analytics/batch_suite.h"
#include "test_util.h"

namespace iotinfer::analytics {
namespace {

store::StoreOptions FreshSqlite() {
  static const iotinfer::testing::TempDir dir;
  static int n = 0;
  return {.uri = "sqlite:" + dir.file("batch-" + std::to_string(n++) + ".db")};
}

INSTANTIATE_TEST_SUITE_P(Sqlite, BatchSuite, ::testing::Values(BatchStore{"sqlite", FreshSqlite}));

TEST(BatchTest, EngineNames) {
  EXPECT_EQ(ParseBatchEngine("native").value(), BatchEngine::kNative);
  EXPECT_EQ(ParseBatchEngine("mongo").value(), BatchEngine::kPushdown);
  EXPECT_EQ(ParseBatchEngine("pushdown").value(), BatchEngine::kPushdown);
  auto unknown = ParseBatchEngine("hadoop");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Error::Code::kInvalidInput);
  EXPECT_NE(unknown.error().message().find("hadoop"), std::string::npos);
}

TEST(BatchTest, UnreachableStoreIsAnErrorNotEmptyResults) {
  BatchOptions options{.store = {.uri = "mongodb://127.0.0.1:1", .timeout = std::chrono::milliseconds(200)},
                       .engine = BatchEngine::kNative,
                       .out_dir = ""};
  auto report = RunBatch(options);
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code(), Error::Code::kUnavailable) << report.error().message();
}

TEST(BatchTest, ResultsTableHasATotalsLine) {
  std::vector<ProducerResult> results{{1, 3, 10, 0, 0.3, 0}, {2, 1, 12, 2, 0.1, 0}};
  const std::string table = FormatResults(results);
  EXPECT_NE(table.find("producer_id"), std::string::npos);
  EXPECT_NE(table.find("30.00%"), std::string::npos);
  // 4 incorrect of 20 labelled
  EXPECT_NE(table.find("all               4         22          2     20.00%"), std::string::npos) << table;
}

}  // namespace
}  // namespace iotinfer::analytics
