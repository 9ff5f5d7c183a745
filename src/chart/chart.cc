#include "chart/chart.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <numbers>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>

namespace iotinfer::chart {
namespace {

// ---------------------------------------------------------------------------------------------
// Look: colours, sizes (pixels) and fonts shared by every chart.

struct Rgb {
  double r, g, b;
};

constexpr Rgb Hex(uint32_t v) { return {((v >> 16) & 0xff) / 255.0, ((v >> 8) & 0xff) / 255.0, (v & 0xff) / 255.0}; }

// Tableau 10 (matplotlib's tab10): ten hues people tell apart, familiar from other tools.
constexpr std::array<Rgb, 10> kPalette = {Hex(0x1f77b4), Hex(0xff7f0e), Hex(0x2ca02c), Hex(0xd62728), Hex(0x9467bd),
                                          Hex(0x8c564b), Hex(0xe377c2), Hex(0x7f7f7f), Hex(0xbcbd22), Hex(0x17becf)};
// ColorBrewer "Blues": a sequential scale that reads as "more" from light to dark and
// survives greyscale printing.
constexpr std::array<Rgb, 9> kBlues = {Hex(0xf7fbff), Hex(0xdeebf7), Hex(0xc6dbef), Hex(0x9ecae1), Hex(0x6baed6),
                                       Hex(0x4292c6), Hex(0x2171b5), Hex(0x08519c), Hex(0x08306b)};

constexpr Rgb kWhite = Hex(0xffffff);
constexpr Rgb kTitleInk = Hex(0x1a1a1a);
constexpr Rgb kLabelInk = Hex(0x333333);
constexpr Rgb kTickInk = Hex(0x4d4d4d);
constexpr Rgb kAxisInk = Hex(0x8c8c8c);
constexpr Rgb kGridInk = Hex(0xe3e3e3);
constexpr Rgb kMinorGridInk = Hex(0xf2f2f2);
constexpr Rgb kMarkerInk = Hex(0x555555);
constexpr Rgb kFrameInk = Hex(0xc8c8c8);

constexpr double kPad = 14;  // between the image edge and anything drawn
constexpr double kTitleSize = 17;
constexpr double kLabelSize = 13;
constexpr double kTickSize = 11.5;
constexpr double kLegendSize = 12;
constexpr double kTickLength = 4;
constexpr double kTickGap = 3;       // between a tick mark and its label
constexpr double kLabelGap = 8;      // between tick labels and the axis label
constexpr double kMinLabelGap = 10;  // between neighbouring tick labels
constexpr double kLineWidth = 2;
constexpr double kRotation = std::numbers::pi / 4;  // of category labels that do not fit flat

constexpr int kMinSide = 100;
constexpr int kMaxSide = 10000;

// ---------------------------------------------------------------------------------------------
// Geometry and text on a cairo context.

/// Pixel rectangle; also the plot frame (x0 left, y0 top, x1 right, y1 bottom).
struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  double width() const { return x1 - x0; }
  double height() const { return y1 - y0; }
  bool Overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

// Liang-Barsky clipping: does the segment pass through the box?
bool SegmentHitsBox(double ax, double ay, double bx, double by, const Box& box) {
  double t0 = 0, t1 = 1;
  auto clip = [&](double p, double q) {
    if (p == 0) return q >= 0;
    double r = q / p;
    if (p < 0) {
      if (r > t1) return false;
      t0 = std::max(t0, r);
    } else {
      if (r < t0) return false;
      t1 = std::min(t1, r);
    }
    return true;
  };
  double dx = bx - ax, dy = by - ay;
  return clip(-dx, ax - box.x0) && clip(dx, box.x1 - ax) && clip(-dy, ay - box.y0) && clip(dy, box.y1 - ay);
}

// 1-pixel lines on half-pixel coordinates stay sharp in the PNG instead of blurring over two rows.
double Crisp(double v) { return std::floor(v) + 0.5; }

enum class HAlign { kLeft, kCenter, kRight };
enum class VAlign { kTop, kCenter, kBottom };

class Painter {
 public:
  explicit Painter(cairo_t* cr) : cr_(cr) {}

  cairo_t* cr() const { return cr_; }

  void SetFont(double size, bool bold = false) {
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, size);
    cairo_font_extents(cr_, &font_);
    cairo_text_extents_t cap;
    cairo_text_extents(cr_, "H", &cap);
    cap_height_ = -cap.y_bearing;
  }

  double TextWidth(const std::string& text) const {
    cairo_text_extents_t extents;
    cairo_text_extents(cr_, text.c_str(), &extents);
    return extents.x_advance;
  }
  // What a line of text occupies from the top of its capitals to the bottom of its descenders.
  double TextHeight() const { return cap_height_ + font_.descent; }

  /// Draws `text` anchored at (x, y), turned by `angle` radians (clockwise) about the anchor.
  void Text(const std::string& text, double x, double y, HAlign h, VAlign v, double angle = 0) {
    double w = TextWidth(text);
    double dx = h == HAlign::kLeft ? 0 : h == HAlign::kCenter ? -w / 2 : -w;
    double dy = v == VAlign::kTop ? cap_height_ : v == VAlign::kCenter ? cap_height_ / 2 : -font_.descent;
    cairo_save(cr_);
    cairo_translate(cr_, x, y);
    cairo_rotate(cr_, angle);
    cairo_move_to(cr_, dx, dy);
    cairo_show_text(cr_, text.c_str());
    cairo_restore(cr_);
  }

  /// `text` cut to fit `max_width` with a trailing ellipsis.
  std::string Ellipsize(const std::string& text, double max_width) const {
    if (TextWidth(text) <= max_width) return text;
    std::string cut = text;
    while (!cut.empty()) {
      // Drop one whole UTF-8 character: continuation bytes first, then its lead byte.
      while (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80) cut.pop_back();
      if (!cut.empty()) cut.pop_back();
      if (TextWidth(cut + "…") <= max_width) return cut + "…";
    }
    return "";
  }

  /// Sets the largest font size in [min_size, size] at which `text` fits `max_width`.
  void SetFontToFit(const std::string& text, double size, double min_size, double max_width, bool bold = false) {
    SetFont(size, bold);
    double w = TextWidth(text);
    if (w > max_width && w > 0) SetFont(std::max(min_size, std::floor(size * max_width / w * 2) / 2), bold);
  }

  void SetColor(Rgb c, double alpha = 1) { cairo_set_source_rgba(cr_, c.r, c.g, c.b, alpha); }

  void FillRect(const Box& b) {
    cairo_rectangle(cr_, b.x0, b.y0, b.width(), b.height());
    cairo_fill(cr_);
  }

  void Line(double ax, double ay, double bx, double by, double width) {
    cairo_new_path(cr_);
    cairo_move_to(cr_, ax, ay);
    cairo_line_to(cr_, bx, by);
    cairo_set_line_width(cr_, width);
    cairo_stroke(cr_);
  }

  void Dot(double x, double y, double radius, Rgb fill) {
    cairo_new_path(cr_);
    cairo_arc(cr_, x, y, radius, 0, 2 * std::numbers::pi);
    SetColor(fill);
    cairo_fill_preserve(cr_);
    SetColor(kWhite);
    cairo_set_line_width(cr_, 1);
    cairo_stroke(cr_);
  }

 private:
  cairo_t* cr_;
  cairo_font_extents_t font_{};
  double cap_height_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Numbers and axes.

// The fewest decimals that show `step` exactly (0.25 -> 2, 0.5 -> 1, 20 -> 0).
int DecimalsFor(double step) {
  if (!(step > 0)) return 0;
  for (int d = 0; d < 12; ++d) {
    double scaled = step * std::pow(10.0, d);
    if (std::abs(scaled - std::round(scaled)) < 1e-6 * scaled) return d;
  }
  return 12;
}

/// Compact tick text: 0.25, 20, 1.5k, 2M; with `percent` fractions as 25%. `step` is the
/// distance between ticks and decides the decimals, the same for every tick of an axis
/// (0.0, 0.5, 1.0) except where a unit suffix is used (500, 1k, 1.5k).
std::string FormatNumber(double v, double step, bool percent = false) {
  std::string suffix;
  if (percent) {
    v *= 100;
    step *= 100;
    suffix = "%";
  }
  if (std::abs(v) < std::abs(step) * 1e-6) v = 0;
  double scale = 1;
  if (!percent) {
    static constexpr std::array<std::pair<double, const char*>, 4> kUnits = {
        {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}}};
    for (const auto& [unit_scale, unit] : kUnits) {
      // Only coarse steps take a unit: 0, 200, ... 1000 reads better than 0, 200, ... 1k.
      if (std::abs(v) >= unit_scale && 2 * step >= unit_scale) {
        scale = unit_scale;
        suffix = unit;
        break;
      }
    }
  }
  std::string text = fmt::format("{:.{}f}", v / scale, DecimalsFor(step / scale));
  if (scale != 1 && text.find('.') != std::string::npos) {
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  if (text == "-0") text = "0";
  return text + suffix;
}

/// Decimals for a heatmap's cells: none when all are integers, else the same for every cell,
/// enough for three significant digits of the largest (0.912 and 0.900, not 0.912 and 0.9).
int CellDecimals(const std::vector<std::vector<double>>& values) {
  double largest = 0;
  bool integral = true;
  for (const auto& row : values) {
    for (double v : row) {
      largest = std::max(largest, std::abs(v));
      integral = integral && v == std::floor(v);
    }
  }
  if (integral) return 0;
  return std::clamp(2 - static_cast<int>(std::floor(std::log10(largest))), 0, 3);
}

std::string FormatCell(double v, int decimals) {
  std::string text = fmt::format("{:.{}f}", v, decimals);
  return text.find_first_not_of("-0.") == std::string::npos ? text.substr(text[0] == '-') : text;
}

/// The smallest 1-2-5 multiple of a power of ten (2.5 too with `allow_quarter`) >= `raw`.
double NiceStep(double raw, bool allow_quarter = false) {
  if (!(raw > 0) || !std::isfinite(raw)) return 1;
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0}) {
    if (m == 2.5 && !allow_quarter) continue;
    if (m * magnitude >= raw * (1 - 1e-9)) return m * magnitude;
  }
  return 10 * magnitude;
}

struct Tick {
  double value;
  std::string label;  // empty: grid line only
  bool major = true;  // minor ticks get a fainter grid line
};

struct Axis {
  double lo = 0, hi = 1;
  double step = 1;  // between linear ticks
  bool log = false;
  std::vector<Tick> ticks;

  double Fraction(double v) const {
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

double MapX(const Axis& axis, const Box& frame, double v) { return frame.x0 + axis.Fraction(v) * frame.width(); }
double MapY(const Axis& axis, const Box& frame, double v) { return frame.y1 - axis.Fraction(v) * frame.height(); }

// A flat range (one value, or a fixed bound beyond the data) still needs a span to draw.
void Widen(double& lo, double& hi, bool fixed_lo, bool fixed_hi) {
  if (hi > lo) return;
  double pad = lo != 0 ? std::abs(lo) * 0.1 : 1;
  if (fixed_lo && !fixed_hi) {
    hi = lo + pad;
  } else if (fixed_hi && !fixed_lo) {
    lo = hi - pad;
  } else {
    lo -= pad;
    hi += pad;
  }
}

void AddLinearTicks(Axis& axis, bool percent) {
  double first = std::ceil(axis.lo / axis.step - 1e-9), last = std::floor(axis.hi / axis.step + 1e-9);
  for (double i = first; i <= last && axis.ticks.size() < 100; ++i) {
    axis.ticks.push_back({i * axis.step, FormatNumber(i * axis.step, axis.step, percent)});
  }
}

/// About `target_ticks` ticks at a 1-2-5 step; unfixed ends extend to the next tick.
Axis LinearAxis(double lo, double hi, double target_ticks, bool fixed_lo, bool fixed_hi, bool percent = false) {
  Widen(lo, hi, fixed_lo, fixed_hi);
  Axis axis;
  axis.step = NiceStep((hi - lo) / std::max(target_ticks, 1.0));
  axis.lo = fixed_lo ? lo : std::floor(lo / axis.step + 1e-9) * axis.step;
  axis.hi = fixed_hi ? hi : std::ceil(hi / axis.step - 1e-9) * axis.step;
  if (!(axis.hi > axis.lo)) axis.hi = axis.lo + axis.step;
  AddLinearTicks(axis, percent);
  return axis;
}

/// Whole decades, labelled 1, 10, 100, ...; `level` 0 labels 2 and 5 as well, higher levels
/// label every 2nd, 5th, 10th ... decade. Minor grid lines at 2..9 when there is room.
Axis LogAxis(double lo, double hi, int level) {
  int k0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  int k1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (k1 <= k0) k1 = k0 + 1;
  static constexpr std::array<int, 7> kEvery = {1, 1, 2, 5, 10, 20, 50};
  int every = kEvery[std::clamp(level, 0, static_cast<int>(kEvery.size()) - 1)];
  Axis axis;
  axis.log = true;
  axis.lo = std::pow(10.0, k0);
  axis.hi = std::pow(10.0, k1);
  for (int k = k0; k <= k1; ++k) {
    double decade = std::pow(10.0, k);
    axis.ticks.push_back({decade, k % every == 0 ? FormatNumber(decade, decade) : "", true});
    if (k == k1 || k1 - k0 > 6) continue;
    for (int m = 2; m <= 9; ++m) {
      bool labelled = level == 0 && (m == 2 || m == 5);
      axis.ticks.push_back({m * decade, labelled ? FormatNumber(m * decade, decade) : "", false});
    }
  }
  return axis;
}

// Tick labels centred under their ticks must keep apart.
bool XLabelsFit(const Painter& p, const Axis& axis, double width) {
  double previous_right = -std::numeric_limits<double>::infinity();
  std::vector<const Tick*> labelled;
  for (const Tick& t : axis.ticks) {
    if (!t.label.empty()) labelled.push_back(&t);
  }
  std::sort(labelled.begin(), labelled.end(), [](const Tick* a, const Tick* b) { return a->value < b->value; });
  for (const Tick* t : labelled) {
    double x = axis.Fraction(t->value) * width, w = p.TextWidth(t->label);
    if (x - w / 2 < previous_right + kMinLabelGap) return false;
    previous_right = x + w / 2;
  }
  return true;
}

/// The densest x axis over [lo, hi] whose labels fit `width` pixels. Expects the tick font set.
Axis FittedXAxis(const Painter& p, double lo, double hi, bool log, double width) {
  if (log) {
    int decades = static_cast<int>(std::ceil(std::log10(hi) - 1e-9) - std::floor(std::log10(lo) + 1e-9));
    Axis axis;
    for (int level = decades <= 2 ? 0 : 1; level < 7; ++level) {
      axis = LogAxis(lo, hi, level);
      if (XLabelsFit(p, axis, width)) break;
    }
    return axis;
  }
  Axis axis;
  for (double spacing = 90; spacing < 4 * width; spacing *= 1.3) {
    axis = LinearAxis(lo, hi, width / spacing, false, false);
    if (XLabelsFit(p, axis, width)) break;
  }
  return axis;
}

double MaxLabelWidth(const Painter& p, const Axis& axis) {
  double w = 0;
  for (const Tick& t : axis.ticks) w = std::max(w, p.TextWidth(t.label));
  return w;
}

// ---------------------------------------------------------------------------------------------
// Pieces every chart has: title, axis labels, grid, axes, legend.

/// Draws the title centred at the top; returns where the content below it may start.
double DrawTitle(Painter& p, const std::string& title, double image_width) {
  if (title.empty()) return kPad;
  double max_width = image_width - 2 * kPad;
  p.SetFontToFit(title, kTitleSize, 11, max_width, true);
  p.SetColor(kTitleInk);
  p.Text(p.Ellipsize(title, max_width), image_width / 2, kPad, HAlign::kCenter, VAlign::kTop);
  return kPad + p.TextHeight() + 12;
}

double AxisLabelHeight(Painter& p, const std::string& label) {
  if (label.empty()) return 0;
  p.SetFont(kLabelSize);
  return p.TextHeight() + kLabelGap;
}

void DrawXLabel(Painter& p, const std::string& label, const Box& frame, double image_height) {
  if (label.empty()) return;
  p.SetFont(kLabelSize);
  p.SetColor(kLabelInk);
  p.Text(p.Ellipsize(label, frame.width() + 2 * kPad), (frame.x0 + frame.x1) / 2, image_height - kPad, HAlign::kCenter,
         VAlign::kBottom);
}

// Reads bottom to top, its capitals facing the left edge at `x`.
void DrawYLabel(Painter& p, const std::string& label, const Box& frame, double x, Rgb ink = kLabelInk) {
  if (label.empty()) return;
  p.SetFont(kLabelSize);
  p.SetColor(ink);
  p.Text(p.Ellipsize(label, frame.height() + 2 * kPad), x, (frame.y0 + frame.y1) / 2, HAlign::kCenter, VAlign::kTop,
         -std::numbers::pi / 2);
}

void DrawHorizontalGrid(Painter& p, const Axis& y, const Box& frame) {
  p.SetColor(kGridInk);
  for (const Tick& t : y.ticks) {
    double py = Crisp(MapY(y, frame, t.value));
    p.Line(frame.x0, py, frame.x1, py, 1);
  }
}

void DrawVerticalGrid(Painter& p, const Axis& x, const Box& frame) {
  for (bool major : {false, true}) {
    p.SetColor(major ? kGridInk : kMinorGridInk);
    for (const Tick& t : x.ticks) {
      if (t.major != major) continue;
      double px = Crisp(MapX(x, frame, t.value));
      p.Line(px, frame.y0, px, frame.y1, 1);
    }
  }
}

// Axis line, outward tick marks and labels on the left (or right) of the frame.
void DrawYAxis(Painter& p, const Axis& y, const Box& frame, bool right) {
  double ax = Crisp(right ? frame.x1 : frame.x0);
  double dir = right ? 1 : -1;
  p.SetColor(kAxisInk);
  p.Line(ax, frame.y0, ax, frame.y1, 1);
  for (const Tick& t : y.ticks) {
    double py = Crisp(MapY(y, frame, t.value));
    p.Line(ax, py, ax + dir * kTickLength, py, 1);
  }
  p.SetFont(kTickSize);
  p.SetColor(kTickInk);
  for (const Tick& t : y.ticks) {
    p.Text(t.label, ax + dir * (kTickLength + kTickGap), MapY(y, frame, t.value),
           right ? HAlign::kLeft : HAlign::kRight, VAlign::kCenter);
  }
}

void DrawXAxis(Painter& p, const Axis& x, const Box& frame) {
  double ay = Crisp(frame.y1);
  p.SetColor(kAxisInk);
  p.Line(frame.x0, ay, frame.x1, ay, 1);
  for (const Tick& t : x.ticks) {
    if (t.label.empty()) continue;
    double px = Crisp(MapX(x, frame, t.value));
    p.Line(px, ay, px, ay + kTickLength, 1);
  }
  p.SetFont(kTickSize);
  p.SetColor(kTickInk);
  for (const Tick& t : x.ticks) {
    p.Text(t.label, MapX(x, frame, t.value), ay + kTickLength + kTickGap, HAlign::kCenter, VAlign::kTop);
  }
}

enum class Swatch { kLine, kBar, kLineWithDot };

struct LegendEntry {
  std::string name;
  Rgb color;
  Swatch swatch;
};

constexpr double kSwatchWidth = 22;
constexpr double kSwatchGap = 6;
constexpr double kLegendPad = 8;
constexpr double kLegendRow = 18;
constexpr double kLegendEntryGap = 20;  // between entries side by side

void DrawSwatch(Painter& p, const LegendEntry& e, double x, double yc) {
  p.SetColor(e.color);
  if (e.swatch == Swatch::kBar) {
    p.FillRect({x + 5, yc - 6, x + kSwatchWidth - 5, yc + 6});
    return;
  }
  cairo_set_line_cap(p.cr(), CAIRO_LINE_CAP_BUTT);
  p.Line(x, yc, x + kSwatchWidth, yc, kLineWidth);
  if (e.swatch == Swatch::kLineWithDot) p.Dot(x + kSwatchWidth / 2, yc, 3.5, e.color);
}

double EntryWidth(const Painter& p, const LegendEntry& e) { return kSwatchWidth + kSwatchGap + p.TextWidth(e.name); }

// Long names are cut so that a legend never takes more than ~40% of the width.
void FitLegendNames(Painter& p, std::vector<LegendEntry>& entries, double image_width) {
  p.SetFont(kLegendSize);
  for (LegendEntry& e : entries) e.name = p.Ellipsize(e.name, 0.4 * image_width);
}

/// A legend as a boxed column, sized for the entries; place it by moving the box.
Box LegendBoxSize(Painter& p, const std::vector<LegendEntry>& entries) {
  p.SetFont(kLegendSize);
  double w = 0;
  for (const LegendEntry& e : entries) w = std::max(w, EntryWidth(p, e));
  return {0, 0, w + 2 * kLegendPad, entries.size() * kLegendRow + 2 * kLegendPad - 4};
}

void DrawLegendBox(Painter& p, const std::vector<LegendEntry>& entries, const Box& box) {
  p.SetColor(kWhite, 0.9);
  p.FillRect(box);
  p.SetColor(kFrameInk);
  cairo_rectangle(p.cr(), Crisp(box.x0), Crisp(box.y0), std::round(box.width()), std::round(box.height()));
  cairo_set_line_width(p.cr(), 1);
  cairo_stroke(p.cr());
  p.SetFont(kLegendSize);
  for (size_t i = 0; i < entries.size(); ++i) {
    double yc = box.y0 + kLegendPad - 2 + (i + 0.5) * kLegendRow;
    DrawSwatch(p, entries[i], box.x0 + kLegendPad, yc);
    p.SetColor(kLabelInk);
    p.Text(entries[i].name, box.x0 + kLegendPad + kSwatchWidth + kSwatchGap, yc, HAlign::kLeft, VAlign::kCenter);
  }
}

// Entries side by side in centred rows between `left` and `right`; returns each entry's
// (x, row) and the number of rows.
std::pair<std::vector<std::pair<double, int>>, int> LayoutLegendBand(Painter& p,
                                                                     const std::vector<LegendEntry>& entries,
                                                                     double left, double right) {
  p.SetFont(kLegendSize);
  std::vector<std::vector<size_t>> rows(1);
  double x = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    double w = EntryWidth(p, entries[i]);
    if (!rows.back().empty() && x + kLegendEntryGap + w > right - left) {
      rows.emplace_back();
      x = 0;
    }
    x += (rows.back().empty() ? 0 : kLegendEntryGap) + w;
    rows.back().push_back(i);
  }
  std::vector<std::pair<double, int>> placed(entries.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    double row_width = 0;
    for (size_t i : rows[r]) row_width += EntryWidth(p, entries[i]) + kLegendEntryGap;
    x = left + (right - left - (row_width - kLegendEntryGap)) / 2;
    for (size_t i : rows[r]) {
      placed[i] = {x, static_cast<int>(r)};
      x += EntryWidth(p, entries[i]) + kLegendEntryGap;
    }
  }
  return {placed, static_cast<int>(rows.size())};
}

double LegendBandHeight(Painter& p, const std::vector<LegendEntry>& entries, double left, double right) {
  if (entries.empty()) return 0;
  return LayoutLegendBand(p, entries, left, right).second * kLegendRow + 6;
}

void DrawLegendBand(Painter& p, const std::vector<LegendEntry>& entries, double left, double right, double top) {
  auto [placed, rows] = LayoutLegendBand(p, entries, left, right);
  p.SetFont(kLegendSize);
  for (size_t i = 0; i < entries.size(); ++i) {
    double yc = top + (placed[i].second + 0.5) * kLegendRow;
    DrawSwatch(p, entries[i], placed[i].first, yc);
    p.SetColor(kLabelInk);
    p.Text(entries[i].name, placed[i].first + kSwatchWidth + kSwatchGap, yc, HAlign::kLeft, VAlign::kCenter);
  }
}

/// The corner of `frame` where a legend of `size` stays clearest of everything `hits`
/// reports (ties: top right, top left, bottom right, bottom left); nullopt when none is free.
std::optional<Box> FreeCorner(const Box& frame, const Box& size, const std::function<bool(const Box&)>& hits) {
  constexpr double kInset = 8;
  double w = size.width(), h = size.height();
  if (w + 2 * kInset > frame.width() || h + 2 * kInset > frame.height()) return std::nullopt;
  const std::array<Box, 4> corners = {
      Box{frame.x1 - kInset - w, frame.y0 + kInset, frame.x1 - kInset, frame.y0 + kInset + h},
      Box{frame.x0 + kInset, frame.y0 + kInset, frame.x0 + kInset + w, frame.y0 + kInset + h},
      Box{frame.x1 - kInset - w, frame.y1 - kInset - h, frame.x1 - kInset, frame.y1 - kInset},
      Box{frame.x0 + kInset, frame.y1 - kInset - h, frame.x0 + kInset + w, frame.y1 - kInset}};
  for (double clearance : {24, 12, 4}) {
    for (const Box& corner : corners) {
      Box padded{corner.x0 - clearance, corner.y0 - clearance, corner.x1 + clearance, corner.y1 + clearance};
      if (!hits(padded)) return corner;
    }
  }
  return std::nullopt;
}

// Margins depend on the tick labels, which depend on the plot's size, which depends on the
// margins: `fit` lays a chart out in a box and returns the box that layout leaves, and a few
// passes settle it. Returns the box of the last pass, so that what `fit` computed in it
// describes the box returned.
Box Settle(Box box, const std::function<Box(const Box&)>& fit) {
  Box laid = box;
  for (int pass = 0; pass < 4; ++pass) {
    laid = box;
    box = fit(laid);
  }
  return laid;
}

/// Where a plot with axes and its legend go.
struct PlotLayout {
  Box frame;
  std::optional<Box> legend_box;  // a free corner of the frame; unset with a legend: a band above
  double legend_band = 0;         // the height of that band
};

/// The layout step of the line and bar charts: the frame settles (`start(band)` is the first
/// guess below a legend band of that height, `fit(frame, band)` lays the axes out in a frame),
/// then the legend goes into a corner of the frame where it hides no data (`hits(frame, box)`)
/// or, when no corner is free, into a band above the plot, and the frame settles again.
PlotLayout LayOutPlot(Painter& p, const std::vector<LegendEntry>& legend, double width,
                      const std::function<Box(double band)>& start,
                      const std::function<Box(const Box& frame, double band)>& fit,
                      const std::function<bool(const Box& frame, const Box& box)>& hits) {
  PlotLayout out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    out.frame = Settle(start(out.legend_band), [&](const Box& frame) { return fit(frame, out.legend_band); });
    if (legend.empty() || out.legend_band > 0) break;
    out.legend_box =
        FreeCorner(out.frame, LegendBoxSize(p, legend), [&](const Box& box) { return hits(out.frame, box); });
    if (out.legend_box) break;
    out.legend_band = LegendBandHeight(p, legend, kPad, width - kPad);
  }
  return out;
}

void DrawLegend(Painter& p, const std::vector<LegendEntry>& legend, const PlotLayout& layout, double width,
                double top) {
  if (layout.legend_box) {
    DrawLegendBox(p, legend, *layout.legend_box);
  } else if (!legend.empty()) {
    DrawLegendBand(p, legend, kPad, width - kPad, top);
  }
}

/// One legend entry per series, named "series N" when unnamed, in the palette's colours;
/// none for a single unnamed series.
std::vector<LegendEntry> SeriesLegend(const std::vector<Series>& series, Swatch swatch, bool force) {
  std::vector<LegendEntry> legend;
  const bool any_named = std::any_of(series.begin(), series.end(), [](const Series& s) { return !s.name.empty(); });
  if (series.size() <= 1 && !any_named && !force) return legend;
  for (size_t i = 0; i < series.size(); ++i) {
    const std::string& name = series[i].name;
    legend.push_back({name.empty() ? fmt::format("series {}", i + 1) : name, kPalette[i % kPalette.size()], swatch});
  }
  return legend;
}

// ---------------------------------------------------------------------------------------------
// Validation.

Status CheckSize(const ChartSize& size) {
  if (size.width < kMinSide || size.width > kMaxSide || size.height < kMinSide || size.height > kMaxSide) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("chart size {}x{} is outside {}..{} pixels", size.width, size.height, kMinSide, kMaxSide)));
  }
  return Ok();
}

Status CheckFinite(std::span<const double> values, std::string_view what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return std::unexpected(Error::InvalidInput(fmt::format("{} has a non-finite value at index {}", what, i)));
    }
  }
  return Ok();
}

std::string Describe(const Series& s, size_t i) {
  return s.name.empty() ? fmt::format("series {}", i) : fmt::format("series '{}'", s.name);
}

Status Validate(const LineChart& c) {
  TRY(CheckSize(c.size));
  if (c.series.empty()) return std::unexpected(Error::InvalidInput("line chart has no series"));
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& s = c.series[i];
    std::string what = Describe(s, i);
    if (s.x.size() != s.y.size()) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("{} has {} x values but {} y values", what, s.x.size(), s.y.size())));
    }
    if (s.x.empty()) return std::unexpected(Error::InvalidInput(fmt::format("{} has no points", what)));
    TRY(CheckFinite(s.x, what + " x"));
    TRY(CheckFinite(s.y, what + " y"));
    if (c.log_x) {
      auto bad = std::find_if(s.x.begin(), s.x.end(), [](double v) { return v <= 0; });
      if (bad != s.x.end()) {
        return std::unexpected(
            Error::InvalidInput(fmt::format("{} has x = {} but a log x axis needs values > 0", what, *bad)));
      }
    }
  }
  for (const Marker& m : c.markers) {
    if (!std::isfinite(m.x) || (c.log_x && m.x <= 0)) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("marker '{}' at x = {} is not {}", m.label, m.x, c.log_x ? "a positive number" : "finite")));
    }
  }
  if ((c.y_min && !std::isfinite(*c.y_min)) || (c.y_max && !std::isfinite(*c.y_max))) {
    return std::unexpected(Error::InvalidInput("y_min and y_max must be finite"));
  }
  if (c.y_min && c.y_max && !(*c.y_min < *c.y_max)) {
    return std::unexpected(Error::InvalidInput(fmt::format("y_min {} must be less than y_max {}", *c.y_min, *c.y_max)));
  }
  return Ok();
}

Status Validate(const BarChart& c) {
  TRY(CheckSize(c.size));
  if (c.categories.empty()) return std::unexpected(Error::InvalidInput("bar chart has no categories"));
  if (c.bars.empty()) return std::unexpected(Error::InvalidInput("bar chart has no bars"));
  auto check = [&](const Series& s, const std::string& what) -> Status {
    if (s.y.size() != c.categories.size()) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("{} has {} values for {} categories", what, s.y.size(), c.categories.size())));
    }
    return CheckFinite(s.y, what);
  };
  for (size_t i = 0; i < c.bars.size(); ++i) {
    TRY(check(c.bars[i], "bar " + Describe(c.bars[i], i)));
    if (c.stacked && std::ranges::any_of(c.bars[i].y, [](double v) { return v < 0; })) {
      return std::unexpected(
          Error::InvalidInput(fmt::format("stacked bar {} has a negative value", Describe(c.bars[i], i))));
    }
  }
  if (c.line) TRY(check(*c.line, "line " + Describe(*c.line, 0)));
  return Ok();
}

Status Validate(const Heatmap& c) {
  TRY(CheckSize(c.size));
  if (c.values.empty() || c.values[0].empty()) return std::unexpected(Error::InvalidInput("heatmap has no cells"));
  size_t cols = c.values[0].size();
  for (size_t r = 0; r < c.values.size(); ++r) {
    if (c.values[r].size() != cols) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("heatmap row {} has {} values but row 0 has {}", r, c.values[r].size(), cols)));
    }
    TRY(CheckFinite(c.values[r], fmt::format("heatmap row {}", r)));
  }
  if (!c.row_labels.empty() && c.row_labels.size() != c.values.size()) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("heatmap has {} row labels for {} rows", c.row_labels.size(), c.values.size())));
  }
  if (!c.col_labels.empty() && c.col_labels.size() != cols) {
    return std::unexpected(
        Error::InvalidInput(fmt::format("heatmap has {} column labels for {} columns", c.col_labels.size(), cols)));
  }
  return Ok();
}

// ---------------------------------------------------------------------------------------------
// Line chart.

struct MarkerLabel {
  size_t marker;
  double x0, width;  // of the label's box
  int row;           // 0: just above the plot, 1: above that, ...
};

// Labels go above the plot, centred on their line, so they never hide data; a label that
// would overlap another moves up a row.
std::vector<MarkerLabel> PlaceMarkerLabels(Painter& p, const LineChart& c, const Axis& x, const Box& frame) {
  p.SetFont(kTickSize);
  std::vector<MarkerLabel> labels;
  for (size_t i = 0; i < c.markers.size(); ++i) {
    if (c.markers[i].label.empty()) continue;
    double w = p.TextWidth(c.markers[i].label) + 6;
    double px = MapX(x, frame, c.markers[i].x);
    labels.push_back({i, std::clamp(px - w / 2, kPad, c.size.width - kPad - w), w, 0});
  }
  std::sort(labels.begin(), labels.end(), [](const MarkerLabel& a, const MarkerLabel& b) { return a.x0 < b.x0; });
  for (size_t i = 0; i < labels.size(); ++i) {
    for (int row = 0;; ++row) {
      bool free = std::none_of(labels.begin(), labels.begin() + i, [&](const MarkerLabel& o) {
        return o.row == row && o.x0 < labels[i].x0 + labels[i].width + 4 && labels[i].x0 < o.x0 + o.width + 4;
      });
      if (free) {
        labels[i].row = row;
        break;
      }
    }
  }
  return labels;
}

double MarkerRowHeight(Painter& p) {
  p.SetFont(kTickSize);
  return p.TextHeight() + 6;
}

Box MarkerLabelBox(Painter& p, const MarkerLabel& label, const Box& frame) {
  double row_height = MarkerRowHeight(p);
  double bottom = frame.y0 - 4 - label.row * row_height;
  return {label.x0, bottom - row_height + 4, label.x0 + label.width, bottom};
}

void DrawLineChart(Painter& p, const LineChart& c) {
  const double width = c.size.width, height = c.size.height;
  double top = DrawTitle(p, c.title, width);

  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const Series& s : c.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
    }
  }
  for (const Marker& m : c.markers) {
    x_lo = std::min(x_lo, m.x);
    x_hi = std::max(x_hi, m.x);
  }
  if (c.y_min) y_lo = *c.y_min;
  if (c.y_max) y_hi = *c.y_max;
  if (c.log_x && !(x_hi > x_lo)) {
    x_lo /= 2;
    x_hi *= 2;
  }

  std::vector<LegendEntry> legend = SeriesLegend(c.series, Swatch::kLine, false);
  FitLegendNames(p, legend, width);

  Axis x, y;
  std::vector<MarkerLabel> marker_labels;
  const PlotLayout layout = LayOutPlot(
      p, legend, width,
      [&](double) {
        return Box{kPad + 50, top, width - kPad - 20, height - kPad - 40};
      },
      [&](const Box& frame, double band) {
        y = LinearAxis(y_lo, y_hi, frame.height() / 55, c.y_min.has_value(), c.y_max.has_value());
        p.SetFont(kTickSize);
        x = FittedXAxis(p, x_lo, x_hi, c.log_x, frame.width());
        marker_labels = PlaceMarkerLabels(p, c, x, frame);

        p.SetFont(kTickSize);
        double x_tick_height = kTickLength + kTickGap + p.TextHeight();
        double y_ticks_width = MaxLabelWidth(p, y) + kTickLength + kTickGap;
        double right_overhang = 0;
        for (const Tick& t : x.ticks) {
          if (!t.label.empty() && x.Fraction(t.value) > 0.999) right_overhang = p.TextWidth(t.label) / 2;
        }
        int rows = 0;
        for (const MarkerLabel& l : marker_labels) rows = std::max(rows, l.row + 1);
        return Box{kPad + AxisLabelHeight(p, c.y_label) + y_ticks_width,
                   top + band + (rows ? rows * MarkerRowHeight(p) + 4 : 0),
                   width - kPad - std::max(12.0, right_overhang),
                   height - kPad - AxisLabelHeight(p, c.x_label) - x_tick_height};
      },
      [&](const Box& frame, const Box& box) {
        for (const Series& s : c.series) {
          double ax = MapX(x, frame, s.x[0]), ay = MapY(y, frame, s.y[0]);
          if (s.x.size() == 1 && SegmentHitsBox(ax, ay, ax, ay, box)) return true;
          for (size_t i = 1; i < s.x.size(); ++i) {
            double bx = MapX(x, frame, s.x[i]), by = MapY(y, frame, s.y[i]);
            if (SegmentHitsBox(ax, ay, bx, by, box)) return true;
            ax = bx;
            ay = by;
          }
        }
        for (const Marker& m : c.markers) {
          double mx = MapX(x, frame, m.x);
          if (SegmentHitsBox(mx, frame.y0, mx, frame.y1, box)) return true;
        }
        return false;
      });
  const Box& frame = layout.frame;

  DrawHorizontalGrid(p, y, frame);
  DrawVerticalGrid(p, x, frame);

  // Data may leave a fixed y range; keep it inside the plot, with room for the line's width.
  cairo_save(p.cr());
  cairo_rectangle(p.cr(), frame.x0, frame.y0 - kLineWidth, frame.width() + kLineWidth, frame.height() + 2 * kLineWidth);
  cairo_clip(p.cr());
  cairo_set_line_join(p.cr(), CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(p.cr(), CAIRO_LINE_CAP_ROUND);
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& s = c.series[i];
    Rgb color = kPalette[i % kPalette.size()];
    bool one_point = std::all_of(s.x.begin(), s.x.end(), [&](double v) { return v == s.x[0]; }) &&
                     std::all_of(s.y.begin(), s.y.end(), [&](double v) { return v == s.y[0]; });
    if (one_point) {
      p.Dot(MapX(x, frame, s.x[0]), MapY(y, frame, s.y[0]), 3.5, color);
      continue;
    }
    cairo_new_path(p.cr());
    double last_x = MapX(x, frame, s.x[0]), last_y = MapY(y, frame, s.y[0]);
    cairo_move_to(p.cr(), last_x, last_y);
    for (size_t j = 1; j < s.x.size(); ++j) {
      double px = MapX(x, frame, s.x[j]), py = MapY(y, frame, s.y[j]);
      // Sub-pixel steps add nothing to the picture but bloat the SVG of a million-point CDF.
      if (j + 1 < s.x.size() && std::abs(px - last_x) < 0.5 && std::abs(py - last_y) < 0.5) continue;
      cairo_line_to(p.cr(), px, py);
      last_x = px;
      last_y = py;
    }
    p.SetColor(color);
    cairo_set_line_width(p.cr(), kLineWidth);
    cairo_stroke(p.cr());
  }
  cairo_restore(p.cr());

  // Markers: dashed lines up to the first row of labels; they stop there so that they do not
  // strike through labels stacked above.
  const double dashes[] = {5, 3};
  cairo_set_dash(p.cr(), dashes, 2, 0);
  cairo_set_line_cap(p.cr(), CAIRO_LINE_CAP_BUTT);
  p.SetColor(kMarkerInk);
  for (size_t i = 0; i < c.markers.size(); ++i) {
    double px = Crisp(MapX(x, frame, c.markers[i].x));
    p.Line(px, frame.y1, px, marker_labels.empty() ? frame.y0 : frame.y0 - 4, 1.2);
  }
  cairo_set_dash(p.cr(), nullptr, 0, 0);

  DrawYAxis(p, y, frame, false);
  DrawXAxis(p, x, frame);
  DrawXLabel(p, c.x_label, frame, height);
  DrawYLabel(p, c.y_label, frame, kPad);

  p.SetFont(kTickSize);
  for (const MarkerLabel& l : marker_labels) {
    Box box = MarkerLabelBox(p, l, frame);
    p.SetColor(kWhite);
    p.FillRect(box);
    p.SetColor(kMarkerInk);
    p.Text(c.markers[l.marker].label, (box.x0 + box.x1) / 2, box.y1 - 2, HAlign::kCenter, VAlign::kBottom);
  }

  DrawLegend(p, legend, layout, width, top);
}

// ---------------------------------------------------------------------------------------------
// Bar chart.

/// How category labels under the bars are drawn: flat, or turned 45 degrees; only every
/// `every`-th one when they would crowd.
struct CategoryLabels {
  std::vector<std::string> texts;
  bool rotated = false;
  size_t every = 1;
  double height = 0;     // below the tick marks
  double overhang = 0;   // left of the first group's centre
  double right_out = 0;  // right of the last group's centre
};

size_t ThinningFor(double needed, double spacing) {
  for (size_t every : {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000}) {
    if (every * spacing >= needed) return every;
  }
  return 10000;
}

CategoryLabels LayoutCategories(Painter& p, const std::vector<std::string>& categories, double group_width,
                                double max_length) {
  p.SetFont(kTickSize);
  CategoryLabels out;
  double widest = 0;
  for (const std::string& category : categories) {
    out.texts.push_back(p.Ellipsize(category, max_length));
    widest = std::max(widest, p.TextWidth(out.texts.back()));
  }
  double text_height = p.TextHeight();
  // Short labels (ids) stay flat and thin out; long ones (names) turn so more of them fit.
  if (widest + kMinLabelGap <= group_width || widest <= 3 * kTickSize) {
    out.every = ThinningFor(widest + kMinLabelGap, group_width);
    out.height = text_height;
    double last_width = p.TextWidth(out.texts[(categories.size() - 1) / out.every * out.every]);
    out.right_out = last_width / 2;
    out.overhang = p.TextWidth(out.texts[0]) / 2;
    return out;
  }
  out.rotated = true;
  out.every = ThinningFor((text_height + 3) / std::sin(kRotation), group_width);
  out.height = widest * std::sin(kRotation) + text_height * std::cos(kRotation);
  out.overhang = p.TextWidth(out.texts[0]) * std::cos(kRotation) + text_height / 2 * std::sin(kRotation);
  out.right_out = text_height / 2;
  return out;
}

// Right-axis ticks at the heights of the left axis's, so one set of grid lines serves both.
Axis AlignedAxis(const Axis& left, double lo, double hi, double target_ticks, bool percent) {
  long below = std::lround(-left.lo / left.step), above = std::lround(left.hi / left.step);
  bool alignable = (hi <= 0 || above > 0) && (lo >= 0 || below > 0) && above + below > 0;
  if (!alignable) return LinearAxis(lo, hi, target_ticks, false, false, percent);
  double needed = 0;
  if (hi > 0) needed = std::max(needed, hi / above);
  if (lo < 0) needed = std::max(needed, -lo / below);
  if (needed == 0) needed = 1.0 / (above + below);
  Axis axis;
  axis.step = NiceStep(needed, /*allow_quarter=*/true);
  axis.lo = -below * axis.step;
  axis.hi = above * axis.step;
  AddLinearTicks(axis, percent);
  return axis;
}

void DrawBarChart(Painter& p, const BarChart& c) {
  const double width = c.size.width, height = c.size.height;
  const size_t n = c.categories.size(), m = c.bars.size();
  double top = DrawTitle(p, c.title, width);

  // Where each bar begins and ends: side by side, from 0; stacked, on the bars before it.
  std::vector<std::vector<std::pair<double, double>>> spans(m, std::vector<std::pair<double, double>>(n));
  double lo = 0, hi = 0;
  for (size_t i = 0; i < n; ++i) {
    double base = 0;
    for (size_t j = 0; j < m; ++j) {
      const double v = c.bars[j].y[i];
      spans[j][i] = c.stacked ? std::pair{base, base + v} : std::pair{0.0, v};
      if (c.stacked) base += v;
      lo = std::min(lo, spans[j][i].second);
      hi = std::max(hi, spans[j][i].second);
    }
  }
  if (lo == hi) hi = 1;
  double line_lo = 0, line_hi = 0;
  if (c.line) {
    for (double v : c.line->y) {
      line_lo = std::min(line_lo, v);
      line_hi = std::max(line_hi, v);
    }
  }
  Rgb line_color = kPalette[m % kPalette.size()];

  std::vector<LegendEntry> legend = SeriesLegend(c.bars, Swatch::kBar, c.line && !c.line->name.empty());
  if (!legend.empty() && c.line) {
    std::string name = !c.line->name.empty() ? c.line->name : !c.line_axis_label.empty() ? c.line_axis_label : "line";
    legend.push_back({name, line_color, Swatch::kLineWithDot});
  }
  FitLegendNames(p, legend, width);

  Axis y, right;
  CategoryLabels labels;
  const PlotLayout layout = LayOutPlot(
      p, legend, width,
      [&](double band) {
        return Box{kPad + 50, top + band, width - kPad - (c.line ? 60 : 12), height - kPad - 40};
      },
      [&](const Box& frame, double) {
        double group_width = frame.width() / n;
        labels = LayoutCategories(p, c.categories, group_width, 0.3 * height);
        y = LinearAxis(lo, hi, frame.height() / 55, false, false);
        if (c.line) right = AlignedAxis(y, line_lo, line_hi, frame.height() / 55, c.line_axis_percent);

        p.SetFont(kTickSize);
        double left_margin = kPad + AxisLabelHeight(p, c.y_label) + MaxLabelWidth(p, y) + kTickLength + kTickGap;
        double right_margin = kPad + std::max(12.0, labels.right_out - group_width / 2);
        if (c.line) {
          right_margin = std::max(right_margin, kPad + AxisLabelHeight(p, c.line_axis_label) + MaxLabelWidth(p, right) +
                                                    kTickLength + kTickGap);
        }
        return Box{std::max(left_margin, kPad + labels.overhang - group_width / 2), frame.y0, width - right_margin,
                   height - kPad - AxisLabelHeight(p, c.x_label) - labels.height - kTickLength - kTickGap};
      },
      [&](const Box& frame, const Box& box) {
        double group_width = frame.width() / n;
        auto group_x = [&](size_t i) { return frame.x0 + (i + 0.5) * group_width; };
        for (size_t i = 0; i < n; ++i) {
          double gx = frame.x0 + i * group_width;
          for (size_t j = 0; j < m; ++j) {
            double a = MapY(y, frame, spans[j][i].first), b = MapY(y, frame, spans[j][i].second);
            if (Box{gx, std::min(a, b), gx + group_width, std::max(a, b)}.Overlaps(box)) return true;
          }
          if (c.line) {
            size_t j = std::min(i + 1, n - 1);
            if (SegmentHitsBox(group_x(i), MapY(right, frame, c.line->y[i]), group_x(j),
                               MapY(right, frame, c.line->y[j]), box)) {
              return true;
            }
          }
        }
        return false;
      });
  const Box& frame = layout.frame;
  auto group_x = [&](size_t i) { return frame.x0 + (i + 0.5) * frame.width() / n; };

  DrawHorizontalGrid(p, y, frame);

  const double group_width = frame.width() / n;
  const size_t columns = c.stacked ? 1 : m;
  const double inner = group_width * (columns == 1 ? 0.7 : 0.8);
  const double bar_width = inner / columns;
  // A hairline of white between neighbouring bars of a group, when they are wide enough.
  const double gap = columns > 1 && bar_width > 6 ? 1 : 0;
  for (size_t i = 0; i < n; ++i) {
    double gx = frame.x0 + i * group_width + (group_width - inner) / 2;
    for (size_t j = 0; j < m; ++j) {
      double a = MapY(y, frame, spans[j][i].first), b = MapY(y, frame, spans[j][i].second);
      const size_t column = c.stacked ? 0 : j;
      p.SetColor(kPalette[j % kPalette.size()]);
      p.FillRect(
          {gx + column * bar_width + gap / 2, std::min(a, b), gx + (column + 1) * bar_width - gap / 2, std::max(a, b)});
    }
  }

  if (c.line) {
    cairo_new_path(p.cr());
    for (size_t i = 0; i < n; ++i) cairo_line_to(p.cr(), group_x(i), MapY(right, frame, c.line->y[i]));
    p.SetColor(line_color);
    cairo_set_line_join(p.cr(), CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_width(p.cr(), kLineWidth);
    cairo_stroke(p.cr());
    double radius = std::min(3.5, group_width * 0.22);
    if (radius >= 1.5) {
      for (size_t i = 0; i < n; ++i) p.Dot(group_x(i), MapY(right, frame, c.line->y[i]), radius, line_color);
    }
  }

  DrawYAxis(p, y, frame, false);
  if (c.line) DrawYAxis(p, right, frame, true);

  // Category axis: a tick and a label under every labelled group.
  double ay = Crisp(frame.y1);
  p.SetColor(kAxisInk);
  p.Line(frame.x0, ay, frame.x1, ay, 1);
  p.SetFont(kTickSize);
  for (size_t i = 0; i < n; i += labels.every) {
    double gx = Crisp(group_x(i));
    p.SetColor(kAxisInk);
    p.Line(gx, ay, gx, ay + kTickLength, 1);
    p.SetColor(kTickInk);
    double label_y = ay + kTickLength + kTickGap;
    if (labels.rotated) {
      p.Text(labels.texts[i], group_x(i), label_y + p.TextHeight() / 2 * std::cos(kRotation), HAlign::kRight,
             VAlign::kCenter, -kRotation);
    } else {
      p.Text(labels.texts[i], group_x(i), label_y, HAlign::kCenter, VAlign::kTop);
    }
  }

  DrawXLabel(p, c.x_label, frame, height);
  DrawYLabel(p, c.y_label, frame, kPad);
  if (c.line) {
    p.SetFont(kLabelSize);
    DrawYLabel(p, c.line_axis_label, frame, width - kPad - p.TextHeight(), line_color);
  }

  DrawLegend(p, legend, layout, width, top);
}

// ---------------------------------------------------------------------------------------------
// Heatmap.

Rgb Blues(double t) {
  double position = std::clamp(t, 0.0, 1.0) * (kBlues.size() - 1);
  size_t i = std::min(static_cast<size_t>(position), kBlues.size() - 2);
  double f = position - i;
  const Rgb &a = kBlues[i], &b = kBlues[i + 1];
  return {a.r + (b.r - a.r) * f, a.g + (b.g - a.g) * f, a.b + (b.b - a.b) * f};
}

// Rec. 601 luma: dark enough cells take white text.
bool IsDark(Rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b < 0.55; }

void DrawHeatmap(Painter& p, const Heatmap& c) {
  const double width = c.size.width, height = c.size.height;
  const size_t rows = c.values.size(), cols = c.values[0].size();
  double top = DrawTitle(p, c.title, width);

  auto label_or_index = [](const std::vector<std::string>& labels, size_t i) {
    return labels.empty() ? std::to_string(i) : labels[i];
  };
  std::vector<std::string> col_names;
  for (size_t i = 0; i < cols; ++i) col_names.push_back(label_or_index(c.col_labels, i));

  double v_lo = 0, v_hi = -std::numeric_limits<double>::infinity();
  for (const auto& row : c.values) {
    for (double v : row) {
      v_lo = std::min(v_lo, v);
      v_hi = std::max(v_hi, v);
    }
  }
  if (!(v_hi > v_lo)) v_hi = v_lo + 1;

  p.SetFont(kTickSize);
  std::vector<std::string> row_names;
  double row_names_width = 0;
  for (size_t r = 0; r < rows; ++r) {
    row_names.push_back(p.Ellipsize(label_or_index(c.row_labels, r), 0.25 * width));
    row_names_width = std::max(row_names_width, p.TextWidth(row_names.back()));
  }

  constexpr double kBarWidth = 14, kBarGap = 18, kNameGap = 6;
  Box grid;
  Axis scale;
  CategoryLabels labels;
  double cell_w = 0, cell_h = 0;
  double left_block = kPad + AxisLabelHeight(p, c.y_label) + row_names_width + kNameGap;
  Box area{left_block, top, width - kPad - kBarGap - kBarWidth - 40, height - kPad - 40};
  auto size_cells = [&] {
    // Cells close to square read as a matrix; allow some stretch to use the space.
    cell_w = std::min(area.width() / cols, 1.5 * area.height() / rows);
    cell_h = std::min(area.height() / rows, 1.2 * cell_w);
  };
  area = Settle(area, [&](const Box& laid) {
    area = laid;
    size_cells();
    labels = LayoutCategories(p, col_names, cell_w, 0.25 * height);
    scale = LinearAxis(v_lo, v_hi, rows * cell_h / 40, true, true);

    p.SetFont(kTickSize);
    double right_block = kBarGap + kBarWidth + kTickLength + kTickGap + MaxLabelWidth(p, scale) + kPad;
    double left = std::max(left_block, kPad + labels.overhang - cell_w / 2);
    double bottom = kPad + AxisLabelHeight(p, c.x_label) + labels.height + kNameGap;
    return Box{left, top, width - right_block, height - bottom};
  });
  size_cells();
  // Centre the whole block (names, grid, colour bar) in the space the cells do not need.
  double spare_w = area.width() - cell_w * cols, spare_h = area.height() - cell_h * rows;
  grid = {area.x0 + spare_w / 2, top + spare_h / 2, area.x0 + spare_w / 2 + cell_w * cols,
          top + spare_h / 2 + cell_h * rows};

  // Cells, then one outline so pale cells still show where the matrix ends.
  std::vector<std::vector<Rgb>> colors(rows, std::vector<Rgb>(cols));
  for (size_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < cols; ++k) {
      colors[r][k] = Blues((c.values[r][k] - v_lo) / (v_hi - v_lo));
      p.SetColor(colors[r][k]);
      // Rounded out to whole pixels so neighbouring cells meet without hairline seams.
      double x0 = std::round(grid.x0 + k * cell_w), x1 = std::round(grid.x0 + (k + 1) * cell_w);
      double y0 = std::round(grid.y0 + r * cell_h), y1 = std::round(grid.y0 + (r + 1) * cell_h);
      p.FillRect({x0, y0, x1, y1});
    }
  }
  p.SetColor(kFrameInk);
  cairo_rectangle(p.cr(), Crisp(grid.x0) - 1, Crisp(grid.y0) - 1, std::round(grid.width()) + 1,
                  std::round(grid.height()) + 1);
  cairo_set_line_width(p.cr(), 1);
  cairo_stroke(p.cr());

  if (c.annotate) {
    int decimals = CellDecimals(c.values);
    double size = std::min(12.0, cell_h * 0.42);
    p.SetFont(size);
    double widest = 0;
    for (const auto& row : c.values) {
      for (double v : row) widest = std::max(widest, p.TextWidth(FormatCell(v, decimals)));
    }
    if (widest > cell_w - 4) size *= (cell_w - 4) / widest;
    // Below this the numbers are unreadable; the colours alone carry the matrix.
    if (size >= 6.5) {
      p.SetFont(size);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t k = 0; k < cols; ++k) {
          p.SetColor(IsDark(colors[r][k]) ? kWhite : kLabelInk);
          p.Text(FormatCell(c.values[r][k], decimals), grid.x0 + (k + 0.5) * cell_w, grid.y0 + (r + 0.5) * cell_h,
                 HAlign::kCenter, VAlign::kCenter);
        }
      }
    }
  }

  // Row names on the left, column names below.
  p.SetFont(kTickSize);
  p.SetColor(kTickInk);
  // Dense rows name every 2nd, 5th, ... row, as dense columns do.
  for (size_t r = 0; r < rows; r += ThinningFor(p.TextHeight() + 3, cell_h)) {
    p.Text(row_names[r], grid.x0 - kNameGap, grid.y0 + (r + 0.5) * cell_h, HAlign::kRight, VAlign::kCenter);
  }
  for (size_t k = 0; k < cols; k += labels.every) {
    double cx = grid.x0 + (k + 0.5) * cell_w, label_y = grid.y1 + kNameGap;
    if (labels.rotated) {
      p.Text(labels.texts[k], cx, label_y + p.TextHeight() / 2 * std::cos(kRotation), HAlign::kRight, VAlign::kCenter,
             -kRotation);
    } else {
      p.Text(labels.texts[k], cx, label_y, HAlign::kCenter, VAlign::kTop);
    }
  }

  // Colour bar: the scale's stops as a gradient (the same linear blend Blues() makes), with
  // ticks at nice values.
  Box bar{grid.x1 + kBarGap, grid.y0, grid.x1 + kBarGap + kBarWidth, grid.y1};
  std::unique_ptr<cairo_pattern_t, decltype(&cairo_pattern_destroy)> gradient(
      cairo_pattern_create_linear(0, bar.y1, 0, bar.y0), cairo_pattern_destroy);
  for (size_t i = 0; i < kBlues.size(); ++i) {
    cairo_pattern_add_color_stop_rgb(gradient.get(), double(i) / (kBlues.size() - 1), kBlues[i].r, kBlues[i].g,
                                     kBlues[i].b);
  }
  cairo_set_source(p.cr(), gradient.get());
  p.FillRect(bar);
  p.SetColor(kFrameInk);
  cairo_rectangle(p.cr(), Crisp(bar.x0) - 1, Crisp(bar.y0) - 1, std::round(bar.width()) + 1,
                  std::round(bar.height()) + 1);
  cairo_stroke(p.cr());
  Box bar_frame{bar.x0, bar.y0, bar.x1, bar.y1};
  p.SetFont(kTickSize);
  for (const Tick& t : scale.ticks) {
    double py = Crisp(MapY(scale, bar_frame, t.value));
    p.SetColor(kAxisInk);
    p.Line(bar.x1, py, bar.x1 + kTickLength, py, 1);
    p.SetColor(kTickInk);
    p.Text(t.label, bar.x1 + kTickLength + kTickGap, MapY(scale, bar_frame, t.value), HAlign::kLeft, VAlign::kCenter);
  }

  // Axis labels centred on the grid: under the column names, left of the row names.
  if (!c.x_label.empty()) {
    p.SetFont(kLabelSize);
    p.SetColor(kLabelInk);
    p.Text(p.Ellipsize(c.x_label, width - 2 * kPad), (grid.x0 + grid.x1) / 2, grid.y1 + kNameGap + labels.height + 10,
           HAlign::kCenter, VAlign::kTop);
  }
  if (!c.y_label.empty()) {
    double names_left = grid.x0 - kNameGap - row_names_width;
    p.SetFont(kLabelSize);
    DrawYLabel(p, c.y_label, grid, std::max(kPad, names_left - kLabelGap - p.TextHeight()));
  }
}

// ---------------------------------------------------------------------------------------------
// Output.

enum class Format { kPng, kSvg };

Result<Format> FormatOf(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (ext == ".png") return Format::kPng;
  if (ext == ".svg") return Format::kSvg;
  return std::unexpected(Error::InvalidInput(fmt::format("{}: unknown chart format (use .png or .svg)", path)));
}

cairo_status_t AppendTo(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

using SurfacePtr = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using ContextPtr = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

// Renders into memory, so that a failure leaves no half-written file behind and the file's
// own errors can carry the operating system's reason (cairo reports only "write error").
Result<std::string> Render(Format format, const ChartSize& size, const std::function<void(Painter&)>& draw) {
  std::string bytes;
  SurfacePtr surface(format == Format::kPng
                         ? cairo_image_surface_create(CAIRO_FORMAT_RGB24, size.width, size.height)
                         : cairo_svg_surface_create_for_stream(AppendTo, &bytes, size.width, size.height),
                     cairo_surface_destroy);
#if CAIRO_VERSION >= CAIRO_VERSION_ENCODE(1, 16, 0)
  // Sized in pixels like the PNG rather than in points, which browsers show a third larger.
  if (format == Format::kSvg) cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
#endif
  {
    ContextPtr cr(cairo_create(surface.get()), cairo_destroy);
    Painter painter(cr.get());
    painter.SetColor(kWhite);
    cairo_paint(cr.get());
    draw(painter);
    if (cairo_status_t status = cairo_status(cr.get()); status != CAIRO_STATUS_SUCCESS) {
      return std::unexpected(Error::Internal(fmt::format("cannot draw the chart: {}", cairo_status_to_string(status))));
    }
  }
  cairo_status_t status;
  if (format == Format::kPng) {
    cairo_surface_flush(surface.get());
    status = cairo_surface_write_to_png_stream(surface.get(), AppendTo, &bytes);
  } else {
    cairo_surface_finish(surface.get());
    status = cairo_surface_status(surface.get());
  }
  if (status != CAIRO_STATUS_SUCCESS) {
    return std::unexpected(Error::Internal(fmt::format("cannot encode the chart: {}", cairo_status_to_string(status))));
  }
  return bytes;
}

Status WriteFile(const std::string& path, const std::string& bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return std::unexpected(
        Error::Io(fmt::format("{}: cannot create: {}", path, std::generic_category().message(errno))));
  }
  int error = 0;
  if (std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) error = errno;
  if (std::fclose(file) != 0 && error == 0) error = errno;
  if (error != 0) {
    std::remove(path.c_str());
    return std::unexpected(
        Error::Io(fmt::format("{}: cannot write: {}", path, std::generic_category().message(error))));
  }
  return Ok();
}

template <typename Chart>
Status Write(const Chart& chart, const std::string& path, void (*draw)(Painter&, const Chart&)) {
  ASSIGN_OR_RETURN(Format format, FormatOf(path));
  TRY(Validate(chart));
  ASSIGN_OR_RETURN(std::string bytes, Render(format, chart.size, [&](Painter& p) { draw(p, chart); }));
  return WriteFile(path, bytes);
}

}  // namespace

Status WriteChart(const LineChart& chart, const std::string& path) { return Write(chart, path, DrawLineChart); }
Status WriteChart(const BarChart& chart, const std::string& path) { return Write(chart, path, DrawBarChart); }
Status WriteChart(const Heatmap& chart, const std::string& path) { return Write(chart, path, DrawHeatmap); }

}  // namespace iotinfer::chart
