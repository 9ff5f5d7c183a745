#include "model/pixel_conv.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <utility>

#include "model/quantize.h"

namespace iotinfer::model {
namespace {

constexpr int64_t kGroup = 16;  // channels a pass computes: 2 blocks of 8
constexpr int64_t kBlock = 8;

// Output pixels a pass computes. Six pixels' sums of 16 channels take 12 of the 16 vector
// registers, next to a tap's 2 weight vectors and a broadcast pixel: 8 loads for 12 FMAs, and
// 12 independent sums (an FMA waits 4 cycles for the last one on the same sum). Three pixels of
// 32 channels loaded a weight for every FMA and ran 20% slower.
constexpr int kPixels = 6;

// 16 channels' sums of one output pixel.
struct Sums {
  __m256 b0, b1;
};

// The sums quantized as QuantizeToNhwcU8 quantizes oneDNN's ReLU output: times the factor,
// clamped to 255 and rounded here, negatives (the ReLU's zeros) to 0 by the unsigned packs.
__attribute__((target("avx2,fma"))) inline void Store(const Sums& s, __m256 factor, uint8_t* out) {
  const __m256 high = _mm256_set1_ps(255.f);
  const __m256i lo = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(s.b0, factor), high));
  const __m256i hi = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(s.b1, factor), high));
  const __m256i u16 = _mm256_packus_epi32(lo, hi);  // lanes: lo 0-3, hi 0-3 | lo 4-7, hi 4-7
  const __m256i u8 = _mm256_packus_epi16(u16, u16);
  // The packs interleave the 128-bit lanes; the permutation puts the channels back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(u8, order)));
}

__attribute__((target("avx2,fma"))) inline void Add(Sums& s, const float* pixel, __m256 w0, __m256 w1) {
  const __m256 x = _mm256_broadcast_ss(pixel);
  s.b0 = _mm256_fmadd_ps(x, w0, s.b0);
  s.b1 = _mm256_fmadd_ps(x, w1, s.b1);
}

// Where a pass reads and writes, and which taps it adds: kernel rows [r0, r1) and columns
// [k0, k1), the others falling in the padding.
struct Window {
  const float* corner;  // the first pixel's window, in the padded image
  int64_t row_stride, pixel_step;
  int64_t r0, r1, k0, k1;
  uint8_t* out;  // the first pixel's 16 channels
  int64_t out_step;
};

// P output pixels side by side in a row. Each sum starts from the bias and adds the taps row
// by row with one rounding each (FMA), as oneDNN's kernel does; skipping the taps in the
// padding changes no sum (it adds zeros). KW > 0: a window of KW columns wholly inside the
// image, its taps unrolled; KW == 0: any, the columns counted at run time.
template <int P, int KW>
__attribute__((target("avx2,fma"))) void Pass(const Window& a, const __m256* weights, int64_t kernel_cols,
                                              const __m256* bias, float factor) {
  static_assert(P >= 1 && P <= 6);
  // Named, not an array: GCC 12 kept an array's sums in memory, storing them at every tap.
  Sums s0{bias[0], bias[1]}, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const float* row = a.corner + r * a.row_stride;
    const __m256* w = weights + r * kernel_cols * 2;
    const int64_t step = a.pixel_step;
    auto tap = [&](int64_t k) __attribute__((target("avx2,fma"))) {
      const __m256 w0 = w[k * 2], w1 = w[k * 2 + 1];
      Add(s0, row + k, w0, w1);
      if constexpr (P >= 2) Add(s1, row + step + k, w0, w1);
      if constexpr (P >= 3) Add(s2, row + 2 * step + k, w0, w1);
      if constexpr (P >= 4) Add(s3, row + 3 * step + k, w0, w1);
      if constexpr (P >= 5) Add(s4, row + 4 * step + k, w0, w1);
      if constexpr (P >= 6) Add(s5, row + 5 * step + k, w0, w1);
    };
    if constexpr (KW > 0) {
      for (int k = 0; k < KW; ++k) tap(k);
    } else {
      for (int64_t k = a.k0; k < a.k1; ++k) tap(k);
    }
  }
  const __m256 scale = _mm256_set1_ps(factor);
  Store(s0, scale, a.out);
  if constexpr (P >= 2) Store(s1, scale, a.out + a.out_step);
  if constexpr (P >= 3) Store(s2, scale, a.out + 2 * a.out_step);
  if constexpr (P >= 4) Store(s3, scale, a.out + 3 * a.out_step);
  if constexpr (P >= 5) Store(s4, scale, a.out + 4 * a.out_step);
  if constexpr (P >= 6) Store(s5, scale, a.out + 5 * a.out_step);
}

// The pass for P pixels of windows `kernel_cols` wide wholly inside the image: unrolled for
// the widths of common kernels.
template <int P>
void InnerPass(const Window& a, const __m256* weights, int64_t kernel_cols, const __m256* bias, float factor) {
  switch (kernel_cols) {
    case 3:
      return Pass<P, 3>(a, weights, kernel_cols, bias, factor);
    case 5:
      return Pass<P, 5>(a, weights, kernel_cols, bias, factor);
    default:
      return Pass<P, 0>(a, weights, kernel_cols, bias, factor);
  }
}

// [first, last) of the taps 0..kernel that fall inside 0..size for an output at `at` (its
// window's first input index, maybe negative).
std::pair<int64_t, int64_t> Inside(int64_t at, int64_t kernel, int64_t size) {
  return {std::clamp<int64_t>(-at, 0, kernel), std::clamp<int64_t>(size - at, 0, kernel)};
}

}  // namespace

std::optional<PixelConvolution> PixelConvolution::Make(const Shape& s, std::span<const float> weights,
                                                       std::span<const float> bias, float factor) {
  if (!CanQuantizeToNhwcU8() || !__builtin_cpu_supports("fma")) return std::nullopt;
  const int64_t taps = s.kernel_rows * s.kernel_cols;
  if (s.outputs <= 0 || s.outputs % kGroup != 0 || taps <= 0 || s.stride_rows <= 0 || s.stride_cols <= 0 ||
      s.rows <= 0 || s.cols <= 0 || weights.size() != static_cast<size_t>(s.outputs * taps) ||
      (!bias.empty() && bias.size() != static_cast<size_t>(s.outputs))) {
    return std::nullopt;
  }
  PixelConvolution c;
  c.shape_ = s;
  c.factor_ = factor;
  c.out_rows_ = (s.rows + s.pad_top + s.pad_bottom - s.kernel_rows) / s.stride_rows + 1;
  c.out_cols_ = (s.cols + s.pad_left + s.pad_right - s.kernel_cols) / s.stride_cols + 1;
  if (c.out_rows_ <= 0 || c.out_cols_ <= 0) return std::nullopt;
  // The output rows and columns whose windows lie inside the image: all taps, none skipped.
  auto inner = [](int64_t outputs, int64_t stride, int64_t pad, int64_t kernel, int64_t size) {
    int64_t first = outputs, last = 0;
    for (int64_t i = 0; i < outputs; ++i) {
      if (i * stride - pad >= 0 && i * stride - pad + kernel <= size) {
        first = std::min(first, i);
        last = i + 1;
      }
    }
    return first < last ? std::pair(first, last) : std::pair(int64_t{0}, int64_t{0});
  };
  c.inner_rows_ = inner(c.out_rows_, s.stride_rows, s.pad_top, s.kernel_rows, s.rows);
  c.inner_cols_ = inner(c.out_cols_, s.stride_cols, s.pad_left, s.kernel_cols, s.cols);
  c.stride_ = s.cols + s.pad_left + s.pad_right;
  c.padded_.assign((s.rows + s.pad_top + s.pad_bottom) * c.stride_, 0.f);
  const int64_t groups = s.outputs / kGroup;
  c.weights_.resize(groups * taps * 2);
  c.bias_.resize(groups * 2);
  for (int64_t o = 0; o < s.outputs; ++o) {
    const int64_t g = o / kGroup, b = o % kGroup / kBlock, lane = o % kBlock;
    for (int64_t t = 0; t < taps; ++t) c.weights_[(g * taps + t) * 2 + b].values[lane] = weights[o * taps + t];
    c.bias_[g * 2 + b].values[lane] = bias.empty() ? 0.f : bias[o];
  }
  return c;
}

void PixelConvolution::Run(const float* src, int64_t n, uint8_t* dst) {
  const Shape& s = shape_;
  const int64_t taps = s.kernel_rows * s.kernel_cols;
  const int64_t row_out = out_cols_ * s.outputs;  // bytes of an output row
  for (int64_t image = 0; image < n; ++image, src += s.rows * s.cols) {
    float* interior = padded_.data() + s.pad_top * stride_ + s.pad_left;
    for (int64_t y = 0; y < s.rows; ++y) std::memcpy(interior + y * stride_, src + y * s.cols, s.cols * sizeof(float));
    uint8_t* image_out = dst + image * out_rows_ * row_out;
    for (int64_t g = 0; g < s.outputs / kGroup; ++g) {
      const auto* weights = reinterpret_cast<const __m256*>(weights_.data()) + g * taps * 2;
      const auto* bias = reinterpret_cast<const __m256*>(bias_.data()) + g * 2;
      auto window = [&](int64_t y, int64_t x) {
        Window w{.corner = padded_.data() + y * s.stride_rows * stride_ + x * s.stride_cols,
                 .row_stride = stride_,
                 .out = image_out + y * row_out + x * s.outputs + g * kGroup};
        std::tie(w.r0, w.r1) = Inside(y * s.stride_rows - s.pad_top, s.kernel_rows, s.rows);
        std::tie(w.k0, w.k1) = Inside(x * s.stride_cols - s.pad_left, s.kernel_cols, s.cols);
        return w;
      };
      // Runs of pixels that add the same taps, `count` of them from (y, x) a step apart, in
      // passes of as many as fit.
      auto run = [&](int64_t y, int64_t x, int64_t count, bool along_row, bool inner) {
        Window w = window(y, x);
        w.pixel_step = along_row ? s.stride_cols : s.stride_rows * stride_;
        w.out_step = along_row ? s.outputs : row_out;
        while (count > 0) {
          const int p = count >= 6 ? 6 : count >= 3 ? 3 : 1;
          if (inner) {
            p == 6   ? InnerPass<6>(w, weights, s.kernel_cols, bias, factor_)
            : p == 3 ? InnerPass<3>(w, weights, s.kernel_cols, bias, factor_)
                     : InnerPass<1>(w, weights, s.kernel_cols, bias, factor_);
          } else {
            p == 6   ? Pass<6, 0>(w, weights, s.kernel_cols, bias, factor_)
            : p == 3 ? Pass<3, 0>(w, weights, s.kernel_cols, bias, factor_)
                     : Pass<1, 0>(w, weights, s.kernel_cols, bias, factor_);
          }
          w.corner += p * w.pixel_step;
          w.out += p * w.out_step;
          count -= p;
        }
      };
      // Inner columns row by row; each other column down its inner rows, then its corners.
      for (int64_t y = 0; y < out_rows_; ++y)
        run(y, inner_cols_.first, inner_cols_.second - inner_cols_.first, true, true);
      for (int64_t x = 0; x < out_cols_; ++x) {
        if (x >= inner_cols_.first && x < inner_cols_.second) continue;
        for (int64_t y = 0; y < inner_rows_.first; ++y) run(y, x, 1, true, false);
        run(inner_rows_.first, x, inner_rows_.second - inner_rows_.first, false, false);
        for (int64_t y = inner_rows_.second; y < out_rows_; ++y) run(y, x, 1, true, false);
      }
    }
  }
}

}  // namespace iotinfer::model
