#include "store/store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "store/retry.h"
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

using std::chrono::milliseconds;

TEST(WriteWithRetriesTest, WaitsOutAnOutageWithDoublingWaitsUpToTheLongest) {
  std::atomic<bool> stop{false};
  int calls = 0;
  std::vector<milliseconds> waits;
  Result<int> result = WriteWithRetries(
      [&]() -> Result<int> {
        if (++calls <= 4) {
          return std::unexpected(calls % 2 ? Error::Unavailable("store down") : Error::Io("database is locked"));
        }
        return 7;
      },
      {.initial = milliseconds(1), .max = milliseconds(4)}, stop,
      [&](const Error&, milliseconds wait) { waits.push_back(wait); });
  ASSERT_OK(result);
  EXPECT_EQ(*result, 7);
  EXPECT_EQ(waits, (std::vector<milliseconds>{milliseconds(1), milliseconds(2), milliseconds(4), milliseconds(4)}));
}

TEST(WriteWithRetriesTest, OtherErrorsAreReturnedAtOnce) {
  std::atomic<bool> stop{false};
  int retries = 0;
  Status result = WriteWithRetries([]() -> Status { return std::unexpected(Error::InvalidInput("bad document")); }, {},
                                   stop, [&](const Error&, milliseconds) { ++retries; });
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), Error::Code::kInvalidInput);
  EXPECT_EQ(retries, 0);
}

TEST(WriteWithRetriesTest, AStopDuringTheWaitEndsItWithUnavailable) {
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    stop = true;
  });
  const auto started = std::chrono::steady_clock::now();
  Status result = WriteWithRetries([]() -> Status { return std::unexpected(Error::Unavailable("store down")); },
                                   {.initial = milliseconds(60000), .max = milliseconds(60000)}, stop,
                                   [](const Error&, milliseconds) {});
  stopper.join();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), Error::Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30)) << "the wait ignored the stop";
}

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

// The MongoDB driver's shared-memory counters stayed in /dev/shm after every process that
// linked it and was killed. Their name is gone while the process runs, so no kill leaves it.
TEST(StoreTest, TheMongoDriversCountersLeaveNothingInDevShm) {
  const std::string counters = "/dev/shm/mongoc-" + std::to_string(getpid());
  EXPECT_FALSE(std::filesystem::exists(counters));
  auto store = Store::Open({.uri = "mongodb://127.0.0.1:1", .timeout = std::chrono::milliseconds(100)});
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_FALSE(std::filesystem::exists(counters));
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

TEST(StoreTest, APasswordFromAFileGoesIntoTheUriEncoded) {
  const fs::path file = TempDir() / "password";
  { std::ofstream(file) << "p@ss:w/rd %\n"; }
  StoreOptions options{.password_file = file.string()};
  EXPECT_EQ(WithPassword("mongodb://alice@db:27017/?tls=true", options).value(),
            "mongodb://alice:p%40ss%3Aw%2Frd%20%25@db:27017/?tls=true");
  options = {.password = "plain"};
  EXPECT_EQ(WithPassword("mongodb://alice@db/", options).value(), "mongodb://alice:plain@db/");
  EXPECT_EQ(WithPassword("mongodb://alice@db/", {}).value(), "mongodb://alice@db/") << "no password set";

  for (const char* uri : {"mongodb://db:27017/", "mongodb://alice:other@db/"}) {
    auto refused = WithPassword(uri, options);
    ASSERT_FALSE(refused) << uri;
    EXPECT_EQ(refused.error().code(), Error::Code::kInvalidInput) << uri;
    EXPECT_EQ(refused.error().message().find("other"), std::string::npos) << "echoed the URI's password";
  }
  auto missing = WithPassword("mongodb://alice@db/", {.password_file = (TempDir() / "none").string()});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Error::Code::kInvalidInput);
}

TEST(StoreTest, AUserWithoutAPasswordIsRefusedNotCrashedOn) {
  // mongo-c-driver 1.23 dereferences the missing password at the first command.
  auto store = Store::Open({.uri = "mongodb://alice@127.0.0.1:1/?serverSelectionTimeoutMS=100"});
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code(), Error::Code::kInvalidInput);
  EXPECT_NE(store.error().message().find("no password"), std::string::npos) << store.error().message();
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
