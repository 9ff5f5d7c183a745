#include "core/error.h"

namespace iotinfer {

std::string_view Error::CodeName(Code code) {
  switch (code) {
    case Code::kInvalidInput:
      return "invalid input";
    case Code::kNotFound:
      return "not found";
    case Code::kIo:
      return "I/O error";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kFailedPrecondition:
      return "failed precondition";
    case Code::kPermissionDenied:
      return "permission denied";
    case Code::kInternal:
      return "internal error";
  }
  return "unknown error";
}

}  // namespace iotinfer
