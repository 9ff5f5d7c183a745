// The store suite against the real MongoDB-protocol server that ./dev services starts
// (FerretDB, or mongod when on PATH), one database per test; IOTINFER_TEST_MONGO_URI names
// another (ctest's postgresql.store: FerretDB on PostgreSQL).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "private_mongo.h"
#include "process_util.h"
#include "store/store.h"
#include "store/store_suite.h"
#include "test_util.h"

namespace iotinfer::store {
namespace {

using iotinfer::testing::TestMongoUri;

std::unique_ptr<Store> OpenFreshMongo() {
  static int n = 0;
  std::string db = "store_test_" + std::to_string(getpid()) + "_" + std::to_string(n++);
  auto store = Store::Open({.uri = TestMongoUri(), .database = db});
  EXPECT_TRUE(store) << store.error().message();
  if (!store) return nullptr;
  EXPECT_TRUE((*store)->Clear());
  return std::move(*store);
}

INSTANTIATE_TEST_SUITE_P(Mongo, StoreSuite, ::testing::Values(StoreFactory{"mongo", OpenFreshMongo}));

TEST(MongoStoreTest, ServerDownIsUnavailableNotAnOpenError) {
  // Nothing listens on port 1: the service may start before its database.
  auto store = Store::Open({.uri = "mongodb://127.0.0.1:1", .timeout = std::chrono::milliseconds(300)});
  ASSERT_TRUE(store) << store.error().message();
  Status ping = (*store)->Ping();
  ASSERT_FALSE(ping);
  EXPECT_EQ(ping.error().code(), Error::Code::kUnavailable) << ping.error().message();
  InferenceRecord r{.id = "a", .image_prediction = "Bag", .producer_id = 1};
  auto upsert = (*store)->Upsert({&r, 1});
  ASSERT_FALSE(upsert);
  EXPECT_EQ(upsert.error().code(), Error::Code::kUnavailable) << upsert.error().message();
}

TEST(MongoStoreTest, DescribeHidesThePassword) {
  auto store = Store::Open(
      {.uri = "mongodb://alice:s3cret@127.0.0.1:1/?authSource=admin", .timeout = std::chrono::milliseconds(100)});
  ASSERT_TRUE(store);
  EXPECT_EQ((*store)->Describe(), "mongodb://alice:***@127.0.0.1:1/?authSource=admin");
  Status ping = (*store)->Ping();
  ASSERT_FALSE(ping);
  EXPECT_EQ(ping.error().message().find("s3cret"), std::string::npos) << ping.error().message();
}

// A server that takes only its account: with it everything works; with a wrong password the
// store says so at once, as a FailedPrecondition (no retry mends it, unlike an outage), and
// commands exit non-zero with that reason, never showing the password.
TEST(MongoStoreTest, AWrongPasswordIsRefusedAtOnceAndNeverShown) {
  using iotinfer::testing::PrivateMongo;
  if (!PrivateMongo::CanAuthenticate()) GTEST_SKIP() << "the authenticating test server is FerretDB";
  PrivateMongo server("iotinfer:iotinfer-dev");
  server.Up();
  auto with_account = [&](const std::string& password) { return server.uri("iotinfer", password); };
  auto good = Store::Open({.uri = with_account("iotinfer-dev"), .database = "auth_test"});
  ASSERT_TRUE(good) << good.error().message();
  InferenceRecord r{.id = "a", .image_prediction = "Bag", .actual_value = "Bag", .producer_id = 1};
  ASSERT_TRUE((*good)->Upsert({&r, 1}));
  EXPECT_EQ((*good)->Count({}).value_or(-1), 1);

  auto bad = Store::Open({.uri = with_account("hunter2-wrong"), .database = "auth_test"});
  ASSERT_FALSE(bad) << "opening creates the indexes, so it meets the refusal";
  EXPECT_EQ(bad.error().code(), Error::Code::kPermissionDenied) << bad.error().message();
  EXPECT_THAT(bad.error().message(), ::testing::HasSubstr("uthentication failed"));
  EXPECT_THAT(bad.error().message(), ::testing::Not(::testing::HasSubstr("hunter2")));
  for (const char* command : {"batch", "batch --engine mongo"}) {
    const auto run = iotinfer::testing::Iotinfer(
        fmt::format("{} --store '{}' --db auth_test", command, with_account("hunter2-wrong")));
    EXPECT_EQ(run.exit_code, 2) << command << "\n" << run.output;
    EXPECT_THAT(run.output, ::testing::HasSubstr("uthentication failed")) << command;
    EXPECT_THAT(run.output, ::testing::Not(::testing::HasSubstr("hunter2"))) << command;
  }
}

// Two stream instances write a producer's first result at the same moment: both upserts find
// no document and insert, and the unique index on producer_id refuses one. FerretDB does not
// retry that as MongoDB 4.2+ does, so the store must, or the instance stops with E11000.
TEST(MongoStoreTest, ConcurrentWritersOfNewResultsBothSucceed) {
  const std::string db = "store_test_" + std::to_string(getpid()) + "_concurrent";
  auto a = Store::Open({.uri = TestMongoUri(), .database = db});
  auto b = Store::Open({.uri = TestMongoUri(), .database = db});
  ASSERT_TRUE(a && b);
  ASSERT_TRUE((*a)->Clear());
  ASSERT_TRUE((*a)->EnsureIndexes());
  for (int round = 0; round < 30; ++round) {
    ASSERT_TRUE((*a)->ReplaceResults({}));  // no results: each write below inserts them anew
    std::vector<ProducerResult> results;
    for (int producer = 0; producer < 8; ++producer) {
      results.push_back({.producer_id = producer, .incorrect_count = round, .total = 100});
    }
    Status from_a = Ok(), from_b = Ok();
    std::thread writer([&] { from_a = (*a)->ReplaceResults(results); });
    from_b = (*b)->ReplaceResults(results);
    writer.join();
    ASSERT_TRUE(from_a) << "round " << round << ": " << from_a.error().message();
    ASSERT_TRUE(from_b) << "round " << round << ": " << from_b.error().message();
    EXPECT_EQ((*a)->ReadResults().value(), results) << "round " << round;
  }
}

// A store whose server went away and came back is used again as soon as it answers: a
// single-threaded libmongoc client would not look at it again for 5 s (the SDAM cooldown),
// which held the sink back about 4 s after every outage.
TEST(MongoStoreTest, ARestartedServerIsUsedAgainAtOnce) {
  iotinfer::testing::PrivateMongo server;
  server.Up();
  auto store = Store::Open({.uri = server.uri(), .database = "reconnect", .timeout = std::chrono::milliseconds(500)});
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_TRUE((*store)->Ping());
  server.KillNine();
  for (int i = 0; i < 2; ++i) {
    Status down = (*store)->Ping();
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error().code(), Error::Code::kUnavailable);
  }
  server.Up();
  const auto up = std::chrono::steady_clock::now();
  while (!(*store)->Ping() && std::chrono::steady_clock::now() - up < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - up, std::chrono::seconds(3));
}

}  // namespace
}  // namespace iotinfer::store
