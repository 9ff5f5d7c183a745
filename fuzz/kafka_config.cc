// libFuzzer target: KafkaConfig::AddPropertiesFile on the input written to a file. Checked: a
// rejection is InvalidInput with a one-line reason that quotes nothing of the file; keys are
// non-empty and trimmed; Describe() does not depend on the values of secret properties
// (IsSecretProperty), so it never shows them.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz/check.h"
#include "kafka/kafka.h"

namespace iotinfer::fuzz {
namespace {

// One path per process ($TMPDIR or /tmp), written for each input and removed after it: a crash
// leaves the file of its input behind, nothing else does.
const std::string& ConfigPath() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/iotinfer-fuzz-kafka-config." +
           std::to_string(getpid()) + ".properties";
  }();
  return path;
}

void Write(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(file != nullptr, "cannot write " + path);
  FUZZ_CHECK(std::fwrite(data, 1, size, file) == size, "cannot write " + path);
  std::fclose(file);
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The same file with every byte that is not a line end, space, comment mark or '=' changed:
// lines keep their kinds (blank, comment, KEY=VALUE, malformed), so a reason that quotes no
// line is the same for both.
std::string OtherWords(const uint8_t* data, size_t size) {
  std::string out(reinterpret_cast<const char*>(data), size);
  for (char& c : out) {
    if (c != '\n' && !IsSpace(c) && c != '#' && c != '!' && c != '=') c = c == 'a' ? 'b' : 'a';
  }
  return out;
}

}  // namespace
}  // namespace iotinfer::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iotinfer;
  const std::string& path = fuzz::ConfigPath();
  fuzz::Write(path, data, size);
  kafka::KafkaConfig config;
  const auto status = config.AddPropertiesFile(path);
  const std::string other_words = fuzz::OtherWords(data, size);
  fuzz::Write(path, reinterpret_cast<const uint8_t*>(other_words.data()), other_words.size());
  kafka::KafkaConfig other_config;
  const auto other_status = other_config.AddPropertiesFile(path);
  std::remove(path.c_str());
  FUZZ_CHECK(status.has_value() == other_status.has_value(), "the same kinds of lines, another outcome");
  if (!status) {
    fuzz::CheckRejection(status.error());
    FUZZ_CHECK(status.error().message() == other_status.error().message(),
               "the reason quotes the file: " + status.error().message());
    return 0;
  }
  kafka::KafkaConfig other_secrets = config;
  for (auto& [key, value] : other_secrets.properties) {
    FUZZ_CHECK(!key.empty() && !fuzz::IsSpace(key.front()) && !fuzz::IsSpace(key.back()), "key '" + key + "'");
    if (kafka::IsSecretProperty(key)) value = value == "x" ? "y" : "x";
  }
  const std::string described = config.Describe();
  FUZZ_CHECK(described == other_secrets.Describe(), "Describe() shows a secret value: " + described);
  return 0;
}
