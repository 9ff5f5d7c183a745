#pragma once

// The real `iotinfer` binary as a child process, for tests that kill and restart services.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace iotinfer::testing {

struct CommandRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

/// Runs `iotinfer <args>` through the shell to its end, or until it has run `timeout_s`
/// seconds: then it is killed and the exit code is 124, so a command that should have
/// stopped fails its test rather than hanging the run.
inline CommandRun Iotinfer(const std::string& args, int timeout_s = 600) {
  const std::string command =
      "timeout -k 5 " + std::to_string(timeout_s) + " " + std::string(IOTINFER_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

/// Runs `iotinfer <args...>`; a process still running at destruction is killed (SIGKILL).
class IotinferProcess {
 public:
  explicit IotinferProcess(std::vector<std::string> args) {
    args.insert(args.begin(), IOTINFER_BINARY);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, IOTINFER_BINARY, nullptr, nullptr, argv.data(), environ), 0);
  }
  ~IotinferProcess() {
    if (pid_ > 0) Signal(SIGKILL);
  }
  IotinferProcess(const IotinferProcess&) = delete;
  IotinferProcess& operator=(const IotinferProcess&) = delete;

  /// Sends `signal` (and `then`, if given, as soon as the process has taken `signal`), waits for the process to end
  /// and returns its status as waitpid reports it.
  int Signal(int signal, int then = 0) {
    kill(pid_, signal);
    if (then != 0) {
      // Two signals pending together are delivered lowest number first, whatever the order they were sent in: on a
      // loaded machine `then` could be taken first.
      WaitUntilNotPending(signal);
      kill(pid_, then);
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  // Until `signal` is no longer pending for the process (ShdPnd in /proc/PID/status), for at most 10 s.
  void WaitUntilNotPending(int signal) const {
    const uint64_t bit = uint64_t{1} << (signal - 1);
    for (int i = 0; i < 1000; ++i) {
      std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
      std::string line;
      bool pending = false;
      while (std::getline(status, line)) {
        if (line.rfind("ShdPnd:", 0) == 0) pending = (std::stoull(line.substr(7), nullptr, 16) & bit) != 0;
      }
      if (!pending) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  pid_t pid_ = -1;
};

}  // namespace iotinfer::testing
