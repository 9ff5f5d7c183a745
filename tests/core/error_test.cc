#include "core/error.h"

#include <gtest/gtest.h>

namespace iotinfer {
namespace {

Result<int> Half(int x) {
  if (x % 2) return std::unexpected(Error::InvalidInput("odd"));
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckEven(int x) {
  TRY(Half(x));
  return Ok();
}

TEST(ErrorTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(Quarter(8).value(), 2);
  auto odd = Quarter(6);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().code(), Error::Code::kInvalidInput);
  EXPECT_EQ(odd.error().message(), "odd");
}

TEST(ErrorTest, TryReturnsErrorsFromStatusFunctions) {
  EXPECT_TRUE(CheckEven(2));
  EXPECT_FALSE(CheckEven(3));
}

TEST(ErrorTest, WithContextPrefixesTheMessageAndKeepsTheCode) {
  Error e = Error::NotFound("no such file").WithContext("model.onnx");
  EXPECT_EQ(e.message(), "model.onnx: no such file");
  EXPECT_EQ(e.code(), Error::Code::kNotFound);
  EXPECT_EQ(Error::CodeName(e.code()), "not found");
}

}  // namespace
}  // namespace iotinfer
