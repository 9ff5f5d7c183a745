#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace iotinfer {

/// An expected failure: a code that callers branch on and a one-line message for people.
/// Messages name the thing that failed ("train-images-idx3-ubyte.gz: truncated ...") and are
/// safe to log: they never contain secrets.
class Error {
 public:
  enum class Code {
    kInvalidInput,        // the input is malformed; retrying the same input fails again
    kNotFound,            // a file, model, topic or document does not exist
    kIo,                  // reading or writing failed
    kUnavailable,         // a server or resource is unreachable now; retriable
    kFailedPrecondition,  // the system is not in a state that allows the call
    kPermissionDenied,    // a server refused the credentials, the certificate or the rights given
    kInternal,            // a bug or an unexpected foreign failure
  };

  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Error InvalidInput(std::string message) { return {Code::kInvalidInput, std::move(message)}; }
  static Error NotFound(std::string message) { return {Code::kNotFound, std::move(message)}; }
  static Error Io(std::string message) { return {Code::kIo, std::move(message)}; }
  static Error Unavailable(std::string message) { return {Code::kUnavailable, std::move(message)}; }
  static Error FailedPrecondition(std::string message) { return {Code::kFailedPrecondition, std::move(message)}; }
  static Error PermissionDenied(std::string message) { return {Code::kPermissionDenied, std::move(message)}; }
  static Error Internal(std::string message) { return {Code::kInternal, std::move(message)}; }

  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  /// Returns a copy whose message is "<context>: <message>", for adding the file or stage.
  Error WithContext(std::string_view context) const { return {code_, std::string(context) + ": " + message_}; }

  /// "invalid input", "not found", ... for logs and CLI messages.
  static std::string_view CodeName(Code code);

 private:
  Code code_;
  std::string message_;
};

/// The return type of every fallible function.
template <typename T>
using Result = std::expected<T, Error>;

/// For functions that return nothing on success.
using Status = Result<void>;

inline Status Ok() { return {}; }

}  // namespace iotinfer

#define IOTINFER_CONCAT_INNER(a, b) a##b
#define IOTINFER_CONCAT(a, b) IOTINFER_CONCAT_INNER(a, b)

/// Evaluates `expr` (a Result or Status); on error returns the error from the enclosing function.
#define TRY(expr)                                             \
  do {                                                        \
    if (auto _try_result = (expr); !_try_result) {            \
      return std::unexpected(std::move(_try_result).error()); \
    }                                                         \
  } while (false)

/// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(IOTINFER_CONCAT(_assign_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)               \
  auto tmp = (expr);                                        \
  if (!tmp) return std::unexpected(std::move(tmp).error()); \
  lhs = std::move(tmp).value()
