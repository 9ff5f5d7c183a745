#include "kafka/dead_letter.h"

#include <fmt/format.h>

#include <chrono>
#include <vector>

#include "kafka/kafka_internal.h"

namespace iotinfer::kafka {
namespace {

constexpr size_t kMaxErrorBytes = 1024;

}  // namespace

std::string_view ReasonCode(DeadLetterReason reason) {
  switch (reason) {
    case DeadLetterReason::kUnreadableRecord:
      return "unreadable-record";
    case DeadLetterReason::kInvalidImage:
      return "invalid-image";
    case DeadLetterReason::kUndecodableImage:
      return "undecodable-image";
    case DeadLetterReason::kTooLarge:
      return "too-large";
    case DeadLetterReason::kInvalidRecord:
      return "invalid-record";
    case DeadLetterReason::kStoreRefused:
      return "store-refused";
    case DeadLetterReason::kIdConflict:
      return "id-conflict";
    case DeadLetterReason::kCommitFailed:
      return "commit-failed";
  }
  return "unknown";
}

const std::array<std::string_view, kDeadLetterReasonCount>& ReasonCodes() {
  static const std::array<std::string_view, kDeadLetterReasonCount> codes = [] {
    std::array<std::string_view, kDeadLetterReasonCount> out;
    for (const DeadLetterReason reason : kDeadLetterReasons) out[ReasonIndex(reason)] = ReasonCode(reason);
    return out;
  }();
  return codes;
}

std::optional<DeadLetterReason> ParseReasonCode(std::string_view code) {
  for (const DeadLetterReason reason : kDeadLetterReasons) {
    if (ReasonCode(reason) == code) return reason;
  }
  return std::nullopt;
}

OutputMessage DeadLetter(const std::string& topic, const InputMessage& in, DeadLetterReason reason,
                         const std::string& error, size_t max_bytes) {
  namespace h = dead_letter_headers;
  OutputMessage out{topic, in.message};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  std::vector<WireMessage::Header> added = {
      {std::string(h::kError), error.size() <= kMaxErrorBytes ? error : error.substr(0, kMaxErrorBytes - 3) + "..."},
      {std::string(h::kReason), std::string(ReasonCode(reason))},
      {std::string(h::kFailedAt), std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(now).count())},
      {std::string(h::kSource), fmt::format("{}/{}/{}", in.topic, in.partition, in.offset)}};
  out.message.headers.insert(out.message.headers.end(), added.begin(), added.end());
  if (WireSize(out.message) <= max_bytes) return out;
  out.message.headers.push_back(
      {std::string(h::kPayloadDropped), fmt::format("{} bytes; the dead letter would exceed the {}-byte limit of {}",
                                                    in.message.value.size(), max_bytes, topic)});
  out.message.value.clear();
  if (WireSize(out.message) <= max_bytes) return out;
  // Kafka's own limits let a key or headers alone be near the size limit.
  out.message.key.clear();
  added.push_back(out.message.headers.back());
  added.push_back({std::string(h::kKeyAndHeadersDropped),
                   fmt::format("{} bytes of key, {} headers", in.message.key.size(), in.message.headers.size())});
  out.message.headers = std::move(added);
  return out;
}

}  // namespace iotinfer::kafka
