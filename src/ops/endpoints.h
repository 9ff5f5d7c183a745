#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace iotinfer::ops {

/// One metric a service exports. Names follow Prometheus conventions: `iotinfer_sink_consumed_total`
/// for counters, base units (seconds) for durations.
struct MetricSpec {
  enum class Kind { kCounter, kGauge, kHistogram };
  Kind kind = Kind::kCounter;
  std::string name;
  std::string help;
  std::vector<double> buckets;  // histograms: upper bounds, ascending
  /// Label names: the metric is then a family of series, one per distinct label values, made
  /// by Add or SetSeries (histograms take none). Every label value must come from a bounded
  /// set (a reason code, the devices a caller chose to show), never straight from input.
  std::vector<std::string> labels;
};

/// One series of a labelled counter or gauge: its label values, in the order of
/// MetricSpec::labels, and its value.
struct Series {
  std::vector<std::string> labels;
  double value = 0;
};

/// A page the endpoints serve beside the probes: GET `path` answers `body()` (called on the
/// server's thread: it must be thread-safe) with `content_type`.
struct Page {
  std::string path;
  std::string content_type;
  std::function<std::string()> body;
};

struct EndpointOptions {
  std::string host = "127.0.0.1";  // 0.0.0.0 in a container, so that probes reach it
  int port = 0;                    // 0: the system picks a free port (see Endpoints::port)
  // /healthz fails once the service's main loop has not turned (Endpoints::Beat) for this
  // long: a liveness probe then restarts a process that hangs. 0: never.
  std::chrono::seconds stall_after{60};
  std::vector<Page> pages;
  /// A path served as server-sent events (text/event-stream): each client gets the latest
  /// event at once, then every one Endpoints::Event publishes. Empty: none.
  std::string events_path;
  /// Event clients served at once: each holds one of the server's threads, and the probes
  /// must keep some (a further client gets 503).
  int max_event_clients = 4;
};

/// The HTTP endpoints of a long-running service, served from a thread of their own:
/// - `/healthz`: 200 while the process serves requests and its main loop turns: 503 once
///   Beat was called and then not again for `stall_after` (liveness);
/// - `/readyz`: 200 when the service said it is ready (connected, partitions assigned),
///   else 503 with the reason it gave (readiness);
/// - `/metrics`: the metrics in the Prometheus text format (0.0.4).
/// Every method is safe to call from any thread.
class Endpoints {
 public:
  /// Binds host:port and starts serving; Unavailable when the address cannot be bound,
  /// InvalidInput for a malformed metric spec. Not ready until SetReady(true, ...).
  static Result<std::unique_ptr<Endpoints>> Start(const EndpointOptions& options, std::vector<MetricSpec> metrics);
  ~Endpoints();

  int port() const;
  void SetReady(bool ready, std::string_view reason);
  /// Says the main loop turned; call it on every turn, and while waiting out a failure.
  void Beat();

  /// Updates a metric declared at Start; a name not declared, or of another kind, is ignored
  /// (metrics must never stop a service).
  void Add(std::string_view counter, double delta);
  void Set(std::string_view gauge, double value);
  void Observe(std::string_view histogram, double value);

  /// Adds to the series of a labelled counter with these label values, making it when new.
  /// Ignored, like the unlabelled ones, for an unknown name or the wrong number of values.
  void Add(std::string_view counter, std::span<const std::string> labels, double delta);
  /// Makes the series of a labelled counter or gauge exactly `series`: the others are removed,
  /// so that a caller can bound them. A counter series shown lower than before is made anew
  /// (to Prometheus, a counter reset).
  void SetSeries(std::string_view name, std::span<const Series> series);

  /// Sends `data` (one line of text, JSON say) to every client of `events_path`, and to each
  /// one that connects later until the next event.
  void Event(std::string data);

  /// The /metrics text, as served.
  std::string Scrape() const;

 private:
  struct Impl;
  explicit Endpoints(std::unique_ptr<Impl> impl);
  static void ServeEvents(Impl& impl, const std::string& path, int max_clients);
  std::unique_ptr<Impl> impl_;
};

/// The endpoints of `service` when `options` is set, after a log line saying where; null
/// when it is not (the service runs without them).
Result<std::unique_ptr<Endpoints>> StartIfAsked(std::string_view service, const std::optional<EndpointOptions>& options,
                                                std::vector<MetricSpec> metrics);

/// Readiness of a Kafka consumer service: ready while it has partitions, its commits do not
/// keep failing (`stuck` empty, else why) and, for one that writes to a store, while the
/// store answers; else the reason.
void SetConsumerReadiness(Endpoints& endpoints, int partitions, bool store_available = true,
                          std::string_view stuck = {});

/// A counter that follows one of a service's running totals. Declared once, it gives both the
/// metric's spec and what to add when the totals move, so that the two cannot drift apart.
template <typename Stats>
struct TotalCounter {
  std::string name;
  std::string help;
  int64_t (*total)(const Stats&);
};

/// The specs of `counters`, then `others`.
template <typename Stats>
std::vector<MetricSpec> WithCounters(const std::vector<TotalCounter<Stats>>& counters, std::vector<MetricSpec> others) {
  std::vector<MetricSpec> specs;
  for (const auto& c : counters) specs.push_back({MetricSpec::Kind::kCounter, c.name, c.help, {}});
  specs.insert(specs.end(), others.begin(), others.end());
  return specs;
}

/// Adds to each counter what its total grew by from `last` to `now`.
template <typename Stats>
void AddGrowth(Endpoints& endpoints, const std::vector<TotalCounter<Stats>>& counters, const Stats& now,
               const Stats& last) {
  for (const auto& c : counters) endpoints.Add(c.name, static_cast<double>(c.total(now) - c.total(last)));
}

/// Adds to each series of a counter labelled by one label what its total grew by from `last`
/// to `now`: `labels[i]` names the series of `now[i]`. A total that has not grown still makes
/// its series (at 0), so that every label value is there from the start and Prometheus sees
/// its first increase.
void AddGrowth(Endpoints& endpoints, std::string_view counter, std::span<const std::string_view> labels,
               std::span<const int64_t> now, std::span<const int64_t> last);

/// Histogram buckets for durations in seconds, from 1 ms to 60 s.
std::vector<double> SecondsBuckets();
/// Histogram buckets for batch sizes, from 1 to 10,000 records.
std::vector<double> SizeBuckets();

}  // namespace iotinfer::ops
