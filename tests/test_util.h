#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace iotinfer::testing {

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "iotinfer-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// The MongoDB-protocol server of the store's tests: IOTINFER_TEST_MONGO_URI (ctest sets it to
/// run them again on FerretDB's PostgreSQL backend), else the one `./dev services up mongo` runs.
inline std::string TestMongoUri() {
  const char* uri = std::getenv("IOTINFER_TEST_MONGO_URI");
  return uri != nullptr && *uri != '\0' ? uri : "mongodb://127.0.0.1:27017";
}

/// The value of an unlabelled `metric` in a Prometheus /metrics text, or -1 when it is absent.
inline double MetricValue(const std::string& text, const std::string& metric) {
  const size_t at = text.find("\n" + metric + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + metric.size() + 2));
}

/// True in builds instrumented by AddressSanitizer or ThreadSanitizer (./dev sanitize), whose
/// shadow memory would be measured by a test of how much memory a service takes.
inline constexpr bool kSanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#else
    false;
#endif

/// How many times longer a test may wait for a service's progress in a sanitized build: a
/// limit on waiting, never a measurement. ThreadSanitizer runs the services several times
/// slower, AddressSanitizer about twice.
inline constexpr int kWaitScale =
#if defined(__SANITIZE_THREAD__)
    3;
#elif defined(__SANITIZE_ADDRESS__)
    2;
#else
        1;
#endif

/// The peak resident memory of this process so far, in MiB: tests that bound what a decoder
/// or service may allocate compare it before and after.
inline long MaxRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

/// A loopback port nothing listens on now, for a service's HTTP endpoints.
inline int FreePort() {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}, .sin_zero = {}};
  bind(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(sock, reinterpret_cast<sockaddr*>(&address), &length);
  close(sock);
  return ntohs(address.sin_port);
}

/// The committed model and the PyTorch predictions that model/train.py wrote with it.
inline std::string ModelPath() { return std::string(IOTINFER_SOURCE_DIR) + "/model/fmnist-cnn.onnx"; }
inline std::string ReferencePredictionsPath() {
  return std::string(IOTINFER_SOURCE_DIR) + "/model/test-predictions.u8";
}

/// The committed model trained on faulty images too (model/train.py --augment), and its
/// PyTorch predictions.
inline std::string AugmentedModelPath() { return std::string(IOTINFER_SOURCE_DIR) + "/model/fmnist-cnn-aug.onnx"; }
inline std::string AugmentedReferencePredictionsPath() {
  return std::string(IOTINFER_SOURCE_DIR) + "/model/fmnist-cnn-aug.test-predictions.u8";
}

/// Writes the committed model to `path` as another version of the same network: ONNX is a
/// protobuf message, and a message followed by a field is that message with the field, so
/// appending a metadata_props entry {"variant": tag} changes the file's hash (its version) and
/// nothing the network computes.
inline void WriteModelVariant(const std::string& path, const std::string& tag) {
  std::ifstream in(ModelPath(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = "variant";
  std::string entry = std::string(1, '\x0a') + static_cast<char>(key.size()) + key + '\x12' +
                      static_cast<char>(tag.size()) + tag;  // StringStringEntryProto {key: 1, value: 2}
  bytes += std::string(1, '\x72') + static_cast<char>(entry.size()) + entry;  // ModelProto field 14
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace iotinfer::testing

#define ASSERT_OK(expr)                                                  \
  do {                                                                   \
    auto&& _assert_ok = (expr);                                          \
    ASSERT_TRUE(_assert_ok.has_value()) << _assert_ok.error().message(); \
  } while (false)
