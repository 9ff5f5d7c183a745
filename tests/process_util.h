#pragma once

// The real `iotinfer` binary as a child process, for tests that kill and restart services.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

  pid_t pid() const { return pid_; }

  /// The process's peak resident memory so far (VmHWM), in bytes; 0 when it cannot be read.
  int64_t PeakRss() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
    }
    return 0;
  }

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

/// A memory cgroup (v1) with a hard limit, for a test to hold a process to what a container
/// would give it. `error()` says why it could not be made (no memory controller, not root).
class MemoryCgroup {
 public:
  MemoryCgroup(const std::string& name, int64_t limit_bytes) : path_("/sys/fs/cgroup/memory/" + name) {
    if (mkdir(path_.c_str(), 0755) != 0) {
      error_ = "cannot create " + path_;
      return;
    }
    if (!Write("memory.limit_in_bytes", std::to_string(limit_bytes))) error_ = "cannot set " + path_ + " limit";
  }
  ~MemoryCgroup() { rmdir(path_.c_str()); }  // once its processes have ended
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  const std::string& error() const { return error_; }
  bool Add(pid_t pid) { return error_.empty() && Write("cgroup.procs", std::to_string(pid)); }
  /// How often the limit was hit (memory.failcnt): reclaim, or the OOM killer when that fails.
  int64_t Failures() const { return Read("memory.failcnt"); }
  int64_t MaxUsage() const { return Read("memory.max_usage_in_bytes"); }

 private:
  bool Write(const std::string& file, const std::string& value) const {
    std::ofstream out(path_ + "/" + file);
    out << value;
    out.flush();
    return static_cast<bool>(out);
  }
  int64_t Read(const std::string& file) const {
    std::ifstream in(path_ + "/" + file);
    int64_t value = -1;
    in >> value;
    return value;
  }

  std::string path_;
  std::string error_;
};

}  // namespace iotinfer::testing
