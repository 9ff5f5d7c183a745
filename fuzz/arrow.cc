// libFuzzer target: spark::DecodeArrowStreams on one to three Arrow IPC streams. Layout, as
// FuzzedDataProvider reads it (fuzz/make_corpus.py writes it):
//   last byte            the number of streams, 1 + byte % 3
//   the 4 bytes before   the length of stream 1, little-endian (when there are 2 or 3)
//   the 4 bytes before   the length of stream 2 (when there are 3)
//   from the front       the streams, the last one taking what is left
// Checked: a rejection is InvalidInput with a one-line reason; every decoded row has a cell
// per column.
#include "spark/arrow.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iotinfer;
  FuzzedDataProvider input(data, size);
  const int count = 1 + input.ConsumeIntegral<uint8_t>() % 3;
  std::vector<size_t> lengths;
  for (int i = 0; i + 1 < count; ++i) lengths.push_back(input.ConsumeIntegral<uint32_t>());
  std::vector<std::string> streams;
  for (size_t length : lengths) streams.push_back(input.ConsumeBytesAsString(length));
  streams.push_back(input.ConsumeRemainingBytesAsString());
  auto table = spark::DecodeArrowStreams(streams);
  if (!table) {
    fuzz::CheckRejection(table.error());
    return 0;
  }
  for (const auto& row : table->rows) FUZZ_CHECK(row.size() == table->columns.size(), "a row of the wrong width");
  return 0;
}
