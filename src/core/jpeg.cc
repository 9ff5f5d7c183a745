#include "core/jpeg.h"

#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <new>

// After <cstdio> and <cstddef>: jpeglib.h uses FILE and size_t without declaring them.
#include <jpeglib.h>

namespace iotinfer {
namespace {

constexpr int kMaxScans = 100;

// libjpeg reports errors through callbacks; error_exit must not return. The callbacks leave
// the reason here and jump back to Decode().
struct ErrorManager {
  jpeg_error_mgr pub;  // first, so that libjpeg's pointer to it is a pointer to this
  jpeg_progress_mgr progress;
  std::jmp_buf jump;
  int warnings = 0;
  bool over_side = false;
  char reason[JMSG_LENGTH_MAX + 64] = {};
};

ErrorManager& Manager(j_common_ptr info) { return *reinterpret_cast<ErrorManager*>(info->err); }

[[noreturn]] void OnError(j_common_ptr info) {
  char message[JMSG_LENGTH_MAX] = {};
  (*info->err->format_message)(info, message);
  std::snprintf(Manager(info).reason, sizeof Manager(info).reason, "corrupt JPEG: %s", message);
  std::longjmp(Manager(info).jump, 1);
}

// Level -1 is a warning: libjpeg found damaged data and goes on. The first one is kept as the
// reason; trace messages (levels >= 0) are dropped. libjpeg's default prints to stderr.
void OnMessage(j_common_ptr info, int level) {
  if (level >= 0 || Manager(info).warnings++ > 0) return;
  char message[JMSG_LENGTH_MAX] = {};
  (*info->err->format_message)(info, message);
  std::snprintf(Manager(info).reason, sizeof Manager(info).reason, "corrupt JPEG: %s", message);
}

// Called between passes; a progressive JPEG can have any number of scans.
void OnProgress(j_common_ptr info) {
  auto* decompress = reinterpret_cast<j_decompress_ptr>(info);
  if (decompress->input_scan_number > kMaxScans) {
    std::snprintf(Manager(info).reason, sizeof Manager(info).reason, "JPEG with more than %d scans", kMaxScans);
    std::longjmp(Manager(info).jump, 1);
  }
}

// Only trivially destructible locals live here, as a longjmp back into this frame skips no
// destructor. `out` belongs to the caller.
bool Decode(std::string_view payload, int max_side, Image& out, ErrorManager& errors) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = OnError;
  errors.pub.emit_message = OnMessage;
  errors.progress.progress_monitor = OnProgress;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  info.progress = &errors.progress;
  jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
  jpeg_read_header(&info, TRUE);
  bool ok = true;
  if (info.image_width > static_cast<JDIMENSION>(max_side) || info.image_height > static_cast<JDIMENSION>(max_side)) {
    std::snprintf(errors.reason, sizeof errors.reason, "JPEG of %ux%u exceeds the side limit of %d", info.image_height,
                  info.image_width, max_side);
    errors.over_side = true;
    ok = false;
  } else if (info.jpeg_color_space == JCS_GRAYSCALE) {
    info.out_color_space = JCS_GRAYSCALE;
  } else if (info.jpeg_color_space == JCS_YCbCr || info.jpeg_color_space == JCS_RGB) {
    info.out_color_space = JCS_RGB;
  } else {
    std::snprintf(errors.reason, sizeof errors.reason, "unsupported JPEG colour space (%d components)",
                  info.num_components);
    ok = false;
  }
  if (ok) {
    jpeg_start_decompress(&info);
    out.rows = static_cast<int>(info.output_height);
    out.cols = static_cast<int>(info.output_width);
    out.channels = info.output_components;
    try {
      out.pixels.resize(out.view().size_bytes());
    } catch (const std::bad_alloc&) {
      std::snprintf(errors.reason, sizeof errors.reason, "no memory for a JPEG of %dx%d", out.rows, out.cols);
      ok = false;
    }
  }
  if (ok) {
    const size_t stride = static_cast<size_t>(out.cols) * out.channels;
    while (info.output_scanline < info.output_height) {
      JSAMPROW row = out.pixels.data() + info.output_scanline * stride;
      jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
  }
  jpeg_destroy_decompress(&info);
  return ok && errors.warnings == 0;
}

}  // namespace

Result<Image> DecodeJpeg(std::string_view payload, int max_side, bool* over_side) {
  Image image;
  ErrorManager errors;
  const bool decoded = Decode(payload, max_side, image, errors);
  if (over_side) *over_side = errors.over_side;
  if (!decoded) return std::unexpected(Error::InvalidInput(errors.reason));
  return image;
}

}  // namespace iotinfer
