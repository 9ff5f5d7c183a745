// libFuzzer target: DecodeInferenceRecord on the input as a JSON text. Checked: a rejection is
// InvalidInput with a one-line reason; a decoded record encodes (no exception) and decodes
// again to an equal record; a timestamp above INT64_MAX is not taken as a negative number.
#include "core/inference_record.h"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz/check.h"

namespace iotinfer::fuzz {
namespace {

// nlohmann's get<int64_t>() of an unsigned value above INT64_MAX wraps it to a negative one.
void CheckNotWrapped(std::string_view text, const InferenceRecord& record) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  for (const char* field : {"producer_id", "produced_at", "inferred_at"}) {
    auto it = json.find(field);
    if (it != json.end() && it->is_number_unsigned()) {
      FUZZ_CHECK(it->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                 std::string("accepted an out-of-range '") + field + "': " + it->dump() + " -> " +
                     EncodeInferenceRecord(record));
    }
  }
}

}  // namespace
}  // namespace iotinfer::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iotinfer;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto record = DecodeInferenceRecord(text);
  if (!record) {
    fuzz::CheckRejection(record.error());
    return 0;
  }
  std::string json;
  try {
    json = EncodeInferenceRecord(*record);
  } catch (const std::exception& e) {
    fuzz::Fail(__FILE__, __LINE__, "EncodeInferenceRecord", std::string("threw for a decoded record: ") + e.what());
  }
  auto again = DecodeInferenceRecord(json);
  FUZZ_CHECK(again.has_value(), "an encoded record does not decode: " + again.error().message() + ": " + json);
  FUZZ_CHECK(*again == *record, "a record changed in a round trip: " + json + " -> " + EncodeInferenceRecord(*again));
  fuzz::CheckNotWrapped(text, *record);
  return 0;
}
