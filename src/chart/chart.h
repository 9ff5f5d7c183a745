#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace iotinfer::chart {

/// Image size in pixels (SVG: CSS pixels). Both must lie in [100, 10000].
struct ChartSize {
  int width = 900;
  int height = 540;
};

/// One named sequence of points. Bar charts use only `y`.
struct Series {
  std::string name;  // shown in the legend; empty: "series N"
  std::vector<double> x;
  std::vector<double> y;
};

/// A dashed vertical line at `x`, labelled above the plot, e.g. "p99 41 ms".
struct Marker {
  double x;
  std::string label;
};

/// Lines over a numeric x axis, e.g. a latency CDF. A legend is drawn when there is more
/// than one series or any series has a name; it goes into an empty corner of the plot, or
/// above it when no corner is free.
struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;  // each drawn as a polyline in the order given
  std::vector<Marker> markers;
  bool log_x = false;                  // log10 x axis; every x (and marker) must then be > 0
  std::optional<double> y_min, y_max;  // fixed y range (e.g. 0..1 for a CDF); unset: from the data
  ChartSize size;
};

/// Groups of bars, one group per category, e.g. per-producer counts, with an optional line
/// on a right-hand axis, e.g. the error rate. The y axis always includes 0.
struct BarChart {
  std::string title, x_label, y_label;
  std::vector<std::string> categories;  // e.g. producer ids; thinned or rotated when they do not fit
  std::vector<Series> bars;             // only y used; y.size() == categories.size(); side by side
  bool stacked = false;                 // bars on top of each other instead; every y must be >= 0
  std::optional<Series> line;           // only y used; y.size() == categories.size()
  std::string line_axis_label;          // right axis label
  bool line_axis_percent = false;       // right axis ticks as percentages of fractions (0.25 -> 25%)
  ChartSize size;
};

/// A matrix of cells on a sequential colour scale with a colour bar, e.g. a confusion matrix.
struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> row_labels, col_labels;  // empty: numbered 0, 1, ...
  std::vector<std::vector<double>> values;          // [row][col]; every row the same length
  bool annotate = true;                             // print each cell's value (integers when integral)
  ChartSize size;
};

/// Renders `chart` to `path`; the format follows the extension, ".png" or ".svg" (any case).
/// Returns InvalidInput, without touching `path`, for another extension or inconsistent data:
/// a size out of range, nothing to draw, mismatched lengths, non-finite values, a log axis
/// with values <= 0, y_min >= y_max. Returns Io naming `path` and the OS's reason when the
/// file cannot be written (a partly written file is removed). Thread-safe for distinct paths.
Status WriteChart(const LineChart& chart, const std::string& path);
Status WriteChart(const BarChart& chart, const std::string& path);
Status WriteChart(const Heatmap& chart, const std::string& path);

}  // namespace iotinfer::chart
