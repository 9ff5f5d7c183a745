#include "store/store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "store/store_suite.h"
#include "test_util.h"

namespace iotinfer::store {
namespace {

namespace fs = std::filesystem;

// Removed with its databases when the test program exits.
fs::path TempDir() {
  static const iotinfer::testing::TempDir dir;
  return dir.path();
}

std::unique_ptr<Store> OpenFreshSqlite() {
  static int n = 0;
  const fs::path path = TempDir() / ("store-" + std::to_string(n++) + ".db");
  auto store = Store::Open({.uri = "sqlite:" + path.string()});
  EXPECT_TRUE(store) << store.error().message();
  return store ? std::move(*store) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreSuite, ::testing::Values(StoreFactory{"sqlite", OpenFreshSqlite}));

TEST(SqliteStoreTest, DataOutlivesTheConnectionAndUsesWal) {
  const fs::path path = TempDir() / "reopen.db";
  InferenceRecord r{.id = "a", .image_prediction = "Bag", .actual_value = "Bag", .producer_id = 1};
  {
    auto store = Store::Open({.uri = "sqlite:" + path.string()});
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->Upsert({&r, 1}));
  }
  auto store = Store::Open({.uri = "sqlite:" + path.string()});
  ASSERT_TRUE(store);
  EXPECT_EQ((*store)->Count({}).value(), 1);
  EXPECT_TRUE(fs::exists(path.string() + "-wal"));
}

TEST(SqliteStoreTest, UnwritablePathIsAnIoError) {
  auto store = Store::Open({.uri = "sqlite:/nonexistent-dir/x.db"});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code(), Error::Code::kIo);
  EXPECT_NE(store.error().message().find("/nonexistent-dir/x.db"), std::string::npos);
}

TEST(StoreTest, UnknownSchemeIsInvalidInput) {
  for (const char* uri : {"postgres://localhost/db", "sqlite:", "", "mongodb://"}) {
    auto store = Store::Open({.uri = uri});
    ASSERT_FALSE(store) << uri;
    EXPECT_EQ(store.error().code(), Error::Code::kInvalidInput) << uri;
  }
}

TEST(StoreTest, RedactUriHidesOnlyThePassword) {
  EXPECT_EQ(RedactUri("mongodb://alice:s3cret@db:27017/?tls=true"), "mongodb://alice:***@db:27017/?tls=true");
  EXPECT_EQ(RedactUri("mongodb://alice@db:27017"), "mongodb://alice@db:27017");
  EXPECT_EQ(RedactUri("mongodb://db:27017/?x=a@b"), "mongodb://db:27017/?x=a@b");
  EXPECT_EQ(RedactUri("mongodb://u:p@ss@db/"), "mongodb://u:***@db/");
  EXPECT_EQ(RedactUri("sqlite:/tmp/a.db"), "sqlite:/tmp/a.db");
}

TEST(StoreTest, InvalidMongoUriNeverEchoesThePassword) {
  auto store = Store::Open({.uri = "mongodb://alice:s3cret@db:notaport/"});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code(), Error::Code::kInvalidInput);
  EXPECT_EQ(store.error().message().find("s3cret"), std::string::npos) << store.error().message();
}

TEST(StoreTest, PerProducerWithNoLabelledRecordsHasZeroErrorRate) {
  std::vector<ConfusionCell> cells{{4, "Bag", std::nullopt, 3}};
  auto results = PerProducer(cells, 7);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0], (ProducerResult{4, 0, 3, 3, 0.0, 7}));
}

}  // namespace
}  // namespace iotinfer::store
