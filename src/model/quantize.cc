#include "model/quantize.h"

#include <immintrin.h>

#include <vector>

namespace iotinfer::model {

std::optional<ChannelRuns> ChannelRunsOf(const dnnl::memory::desc& desc) {
  const dnnl_memory_desc_t& d = desc.data;
  if (d.ndims != 4 || d.data_type != dnnl_f32 || d.format_kind != dnnl_blocked || d.offset0 != 0) return std::nullopt;
  for (int i = 0; i < 4; ++i) {
    if (d.padded_dims[i] != d.dims[i]) return std::nullopt;
  }
  const dnnl_blocking_desc_t& b = d.format_desc.blocking;
  ChannelRuns r{.n = d.dims[0], .c = d.dims[1], .h = d.dims[2], .w = d.dims[3]};
  r.image = b.strides[0];
  r.block = b.strides[1];
  r.row = b.strides[2];
  r.pixel = b.strides[3];
  if (b.inner_nblks == 0 && b.strides[1] == 1) {
    r.run = r.c;  // NHWC: all the channels of a pixel in one run
  } else if (b.inner_nblks == 1 && b.inner_idxs[0] == 1 && (b.inner_blks[0] == 8 || b.inner_blks[0] == 16)) {
    r.run = b.inner_blks[0];
  } else {
    return std::nullopt;
  }
  if (r.c % 8 != 0 || r.c % r.run != 0) return std::nullopt;
  return r;
}

bool CanQuantizeToNhwcU8() {
  // oneDNN's effective ISA, not only the CPU's, so that ONEDNN_MAX_CPU_ISA emulates an older
  // CPU for this step too.
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  return __builtin_cpu_supports("avx2") && (isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2;
}

namespace {

// 8 float32 values scaled, clamped and rounded into int32, as oneDNN's reorder does: the
// clamp to 255 here, the one to 0 by the saturating packs that follow (a negative value
// rounds to a negative integer or zero).
__attribute__((target("avx2"))) inline __m256i Rounded(const float* in, __m256 scale, __m256 high) {
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(in), scale), high));
}

}  // namespace

__attribute__((target("avx2"))) void QuantizeToNhwcU8(const float* src, const ChannelRuns& r, float factor,
                                                      uint8_t* dst) {
  const __m256 scale = _mm256_set1_ps(factor), high = _mm256_set1_ps(255.f);
  // Where each run of 8 channels starts within a pixel.
  std::vector<int64_t> offsets;
  for (int64_t c = 0; c < r.c; c += 8) offsets.push_back(c / r.run * r.block + c % r.run);
  const size_t groups = offsets.size();
  // The packs interleave the 128-bit lanes; this puts the 32 bytes back in channel order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t n = 0; n < r.n; ++n) {
    for (int64_t h = 0; h < r.h; ++h) {
      for (int64_t w = 0; w < r.w; ++w) {
        const float* pixel = src + n * r.image + h * r.row + w * r.pixel;
        size_t g = 0;
        for (; g + 4 <= groups; g += 4, dst += 32) {  // 32 channels at a time
          const __m256i a = _mm256_packus_epi32(Rounded(pixel + offsets[g], scale, high),
                                                Rounded(pixel + offsets[g + 1], scale, high));
          const __m256i b = _mm256_packus_epi32(Rounded(pixel + offsets[g + 2], scale, high),
                                                Rounded(pixel + offsets[g + 3], scale, high));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                              _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), order));
        }
        for (; g < groups; ++g, dst += 8) {  // the last 8, 16 or 24
          const __m256i i32 = Rounded(pixel + offsets[g], scale, high);
          const __m128i u16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(u16, u16));
        }
      }
    }
  }
}

}  // namespace iotinfer::model
