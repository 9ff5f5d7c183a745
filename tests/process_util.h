#pragma once

// The real `iotinfer` binary as a child process, for tests that kill and restart services.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>
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

  /// Sends `signal` (and `then`, if given, at once), waits for the process to end and returns its status as waitpid
  /// reports it.
  int Signal(int signal, int then = 0) {
    kill(pid_, signal);
    if (then != 0) kill(pid_, then);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace iotinfer::testing
