// The batch suite against the MongoDB-protocol server of ./dev services, one database per test
// (IOTINFER_TEST_MONGO_URI names another: ctest's postgresql.analytics).
#include <gtest/gtest.h>
#include <unistd.h>

#include "analytics/batch_suite.h"
#include "test_util.h"

namespace iotinfer::analytics {
namespace {

store::StoreOptions FreshMongo() {
  static int n = 0;
  return {.uri = iotinfer::testing::TestMongoUri(),
          .database = "batch_test_" + std::to_string(getpid()) + "_" + std::to_string(n++)};
}

INSTANTIATE_TEST_SUITE_P(Mongo, BatchSuite, ::testing::Values(BatchStore{"mongo", FreshMongo}));

}  // namespace
}  // namespace iotinfer::analytics
