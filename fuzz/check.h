#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.h"

/// Aborts with `what` when `condition` is false: libFuzzer saves the input as a crash.
#define FUZZ_CHECK(condition, what)                                                   \
  do {                                                                                \
    if (!(condition)) ::iotinfer::fuzz::Fail(__FILE__, __LINE__, #condition, (what)); \
  } while (false)

namespace iotinfer::fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* condition, std::string_view what) {
  std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %.*s\n", file, line, condition, static_cast<int>(what.size()),
               what.data());
  std::abort();
}

/// What every decoder here promises for a rejection: InvalidInput with a non-empty one-line
/// reason (they become dead-letter reasons and log lines).
inline void CheckRejection(const Error& error) {
  FUZZ_CHECK(error.code() == Error::Code::kInvalidInput,
             std::string(Error::CodeName(error.code())) + ": " + error.message());
  FUZZ_CHECK(!error.message().empty(), "empty reason");
  FUZZ_CHECK(error.message().find_first_of("\r\n") == std::string::npos, error.message());
}

}  // namespace iotinfer::fuzz
