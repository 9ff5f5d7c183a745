#pragma once

// The int8 engine's quantization of float32 activations, done by OnednnNet between its first
// convolution and the int8 layers; not for use elsewhere.

#include <cstdint>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>

namespace iotinfer::model {

/// Where each value of a float32 [n, c, h, w] tensor lies, for the layouts QuantizeToNhwcU8
/// reads: channels in runs of `run` contiguous values (the 8 or 16 of nChw8c / nChw16c, or
/// all of them in NHWC), each run at n * image + (c / run) * block + h * row + w * pixel.
struct ChannelRuns {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t run = 0, image = 0, block = 0, row = 0, pixel = 0;
};

/// The runs of `desc`, or nullopt where QuantizeToNhwcU8 cannot read it: not float32 4-D, not
/// NHWC, nChw8c or nChw16c, or channels that are no multiple of 8.
std::optional<ChannelRuns> ChannelRunsOf(const dnnl::memory::desc& desc);

/// Whether this CPU runs QuantizeToNhwcU8 (it needs AVX2).
bool CanQuantizeToNhwcU8();

/// Quantizes float32 activations laid out as `runs` says for an int8 layer: u8 NHWC, each value
/// times `factor`, clamped to 0..255 and rounded to the nearest even integer, exactly what
/// oneDNN's reorder with that output scale computes, in 0.4x its time on this model's first
/// convolution's output (docs/bench-log.md, 2026-12-05). Requires CanQuantizeToNhwcU8();
/// `dst` holds n * h * w * c bytes.
void QuantizeToNhwcU8(const float* src, const ChannelRuns& runs, float factor, uint8_t* dst);

}  // namespace iotinfer::model
