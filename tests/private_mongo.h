#pragma once

// A MongoDB-protocol server of a test's own, started by ./dev services on another port, so
// that killing it (or making it refuse clients) disturbs no other test.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "test_util.h"

namespace iotinfer::testing {

class PrivateMongo {
 public:
  /// `auth` ("USER:PASSWORD"): the server takes only that account (FerretDB only).
  explicit PrivateMongo(std::string auth = "") : port_(27100 + getpid() % 800), auth_(std::move(auth)) {}
  ~PrivateMongo() { Dev("down"); }
  PrivateMongo(const PrivateMongo&) = delete;
  PrivateMongo& operator=(const PrivateMongo&) = delete;

  std::string uri() const { return fmt::format("mongodb://127.0.0.1:{}", port_); }
  /// The URI with an account, for a server started with `auth`.
  std::string uri(const std::string& user, const std::string& password) const {
    return fmt::format("mongodb://{}:{}@127.0.0.1:{}/?authSource=admin", user, password, port_);
  }
  /// Whether a server with `auth` can be started here: FerretDB is, mongod is not set up so.
  static bool CanAuthenticate() { return std::system("command -v mongod >/dev/null") != 0; }
  void Up() { ASSERT_EQ(Dev("up"), 0); }
  void KillNine() {
    std::ifstream pidfile(dir_.file("pid"));
    pid_t pid = 0;
    ASSERT_TRUE(pidfile >> pid);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    while (kill(pid, 0) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

 private:
  // On FerretDB's PostgreSQL backend (IOTINFER_MONGO_BACKEND=postgresql, as ctest's
  // postgresql.store sets), the server's PostgreSQL listens 1000 ports above it.
  int Dev(const char* action) const {
    const std::string command = fmt::format(
        "IOTINFER_MONGO_PORT={} IOTINFER_PG_PORT={} IOTINFER_MONGO_DATA={} IOTINFER_MONGO_AUTH='{}' {}/dev services {} "
        "mongo",
        port_, port_ + 1000, dir_.path().string(), auth_, IOTINFER_SOURCE_DIR, action);
    return std::system(command.c_str());
  }
  TempDir dir_;
  int port_;
  std::string auth_;
};

}  // namespace iotinfer::testing
