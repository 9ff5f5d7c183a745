#include "ops/endpoints.h"

#include <fmt/format.h>
#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace iotinfer::ops {

namespace {

// A metric with labels: its series as the caller last made them, so that SetSeries can remove
// the rest.
struct LabelledFamily {
  std::vector<std::string> names;
  prometheus::Family<prometheus::Counter>* counters = nullptr;  // one of the two
  prometheus::Family<prometheus::Gauge>* gauges = nullptr;
  std::mutex mutex;  // guards shown (prometheus-cpp guards the family itself)
  std::set<prometheus::Labels> shown;

  std::optional<prometheus::Labels> LabelsOf(std::span<const std::string> values) const {
    if (values.size() != names.size()) return std::nullopt;
    prometheus::Labels labels;
    for (size_t i = 0; i < names.size(); ++i) labels.emplace(names[i], values[i]);
    return labels;
  }
};

}  // namespace

struct Endpoints::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::map<std::string, std::unique_ptr<LabelledFamily>, std::less<>> labelled;
  std::map<std::string, prometheus::Counter*, std::less<>> counters;
  std::map<std::string, prometheus::Gauge*, std::less<>> gauges;
  std::map<std::string, prometheus::Histogram*, std::less<>> histograms;
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mutex;  // guards ready and reason
  bool ready = false;
  std::string reason = "starting";
  std::chrono::seconds stall_after{60};
  // When the main loop last said it turned (steady clock, ns); 0 until it first does.
  std::atomic<int64_t> last_beat{0};
  // The latest event, numbered from 1, for the event clients (each waits for a newer one).
  std::mutex events_mutex;
  std::condition_variable events_changed;
  std::string event;
  int64_t event_number = 0;
  int event_clients = 0;
  bool stopping = false;
};

namespace {

int64_t SteadyNanos() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

}  // namespace

// Each client waits for an event newer than the last it got, and gets a comment line every
// 15 s meanwhile, so that proxies keep the connection and a client that left is noticed.
void Endpoints::ServeEvents(Impl& impl, const std::string& path, int max_clients) {
  Impl* state = &impl;
  impl.server.Get(path, [state, max_clients](const httplib::Request&, httplib::Response& res) {
    {
      std::lock_guard lock(state->events_mutex);
      if (state->event_clients >= max_clients) {
        res.status = 503;
        res.set_content(fmt::format("already {} event clients\n", max_clients), "text/plain");
        return;
      }
      ++state->event_clients;
    }
    res.set_header("Cache-Control", "no-cache");
    auto seen = std::make_shared<int64_t>(0);
    res.set_chunked_content_provider(
        "text/event-stream",
        [state, seen](size_t, httplib::DataSink& sink) {
          std::unique_lock lock(state->events_mutex);
          state->events_changed.wait_for(lock, std::chrono::seconds(15),
                                         [&] { return state->stopping || state->event_number > *seen; });
          if (state->stopping) return false;
          std::string chunk = ": still here\n\n";
          if (state->event_number > *seen) {
            chunk = "data: " + state->event + "\n\n";
            *seen = state->event_number;
          }
          lock.unlock();
          return sink.write(chunk.data(), chunk.size());
        },
        [state](bool) {
          std::lock_guard lock(state->events_mutex);
          --state->event_clients;
        });
  });
}

Endpoints::Endpoints(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Endpoints::~Endpoints() {
  {
    std::lock_guard lock(impl_->events_mutex);
    impl_->stopping = true;
  }
  impl_->events_changed.notify_all();
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<Endpoints>> Endpoints::Start(const EndpointOptions& options, std::vector<MetricSpec> metrics) {
  auto impl = std::make_unique<Impl>();
  for (MetricSpec& m : metrics) {
    if (m.name.empty() || !std::is_sorted(m.buckets.begin(), m.buckets.end()) ||
        (m.kind == MetricSpec::Kind::kHistogram && !m.labels.empty())) {
      return std::unexpected(Error::InvalidInput(
          fmt::format("metric '{}': no name, unsorted buckets, or a histogram with labels", m.name)));
    }
    if (!m.labels.empty()) {
      auto family = std::make_unique<LabelledFamily>();
      family->names = m.labels;
      if (m.kind == MetricSpec::Kind::kCounter) {
        family->counters = &prometheus::BuildCounter().Name(m.name).Help(m.help).Register(*impl->registry);
      } else {
        family->gauges = &prometheus::BuildGauge().Name(m.name).Help(m.help).Register(*impl->registry);
      }
      impl->labelled[m.name] = std::move(family);
      continue;
    }
    switch (m.kind) {
      case MetricSpec::Kind::kCounter:
        impl->counters[m.name] =
            &prometheus::BuildCounter().Name(m.name).Help(m.help).Register(*impl->registry).Add({});
        break;
      case MetricSpec::Kind::kGauge:
        impl->gauges[m.name] = &prometheus::BuildGauge().Name(m.name).Help(m.help).Register(*impl->registry).Add({});
        break;
      case MetricSpec::Kind::kHistogram:
        impl->histograms[m.name] = &prometheus::BuildHistogram()
                                        .Name(m.name)
                                        .Help(m.help)
                                        .Register(*impl->registry)
                                        .Add({}, prometheus::Histogram::BucketBoundaries(m.buckets));
        break;
    }
  }
  Impl* state = impl.get();
  // cpp-httplib's default adds SO_REUSEPORT, with which a second service on the same port
  // would share it (and its probes) silently instead of failing.
  impl->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  impl->stall_after = options.stall_after;
  impl->server.Get("/healthz", [state](const httplib::Request&, httplib::Response& res) {
    const int64_t beat = state->last_beat.load();
    const auto since = std::chrono::nanoseconds(SteadyNanos() - beat);
    if (beat != 0 && state->stall_after.count() > 0 && since > state->stall_after) {
      res.status = 503;
      res.set_content(
          fmt::format("the main loop has not turned for {:.0f} s\n", std::chrono::duration<double>(since).count()),
          "text/plain");
      return;
    }
    res.set_content("ok\n", "text/plain");
  });
  impl->server.Get("/readyz", [state](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(state->mutex);
    res.status = state->ready ? 200 : 503;
    res.set_content(state->ready ? "ready\n" : state->reason + "\n", "text/plain");
  });
  impl->server.Get("/metrics", [state](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus::TextSerializer().Serialize(state->registry->Collect()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  for (const Page& page : options.pages) {
    impl->server.Get(page.path, [page](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-cache");
      res.set_content(page.body(), page.content_type);
    });
  }
  if (!options.events_path.empty()) ServeEvents(*impl, options.events_path, options.max_event_clients);
  if (options.port == 0) {
    impl->port = impl->server.bind_to_any_port(options.host.c_str());
  } else if (impl->server.bind_to_port(options.host.c_str(), options.port)) {
    impl->port = options.port;
  } else {
    impl->port = -1;
  }
  if (impl->port < 0) {
    return std::unexpected(Error::Unavailable(
        fmt::format("cannot serve the health and metrics endpoints on {}:{}: the address is taken or invalid",
                    options.host, options.port)));
  }
  impl->thread = std::thread([state] { state->server.listen_after_bind(); });
  // A stop() that comes before the listen loop runs is lost, and the destructor would wait
  // forever: return once it runs.
  for (int i = 0; i < 5000 && !impl->server.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return std::unique_ptr<Endpoints>(new Endpoints(std::move(impl)));
}

int Endpoints::port() const { return impl_->port; }

void Endpoints::Beat() { impl_->last_beat = SteadyNanos(); }

void Endpoints::SetReady(bool ready, std::string_view reason) {
  std::lock_guard lock(impl_->mutex);
  impl_->ready = ready;
  impl_->reason = std::string(reason);
}

void Endpoints::Add(std::string_view counter, double delta) {
  if (auto it = impl_->counters.find(counter); it != impl_->counters.end() && delta > 0) it->second->Increment(delta);
}

void Endpoints::Set(std::string_view gauge, double value) {
  if (auto it = impl_->gauges.find(gauge); it != impl_->gauges.end()) it->second->Set(value);
}

void Endpoints::Observe(std::string_view histogram, double value) {
  if (auto it = impl_->histograms.find(histogram); it != impl_->histograms.end()) it->second->Observe(value);
}

void Endpoints::Add(std::string_view counter, std::span<const std::string> labels, double delta) {
  const auto it = impl_->labelled.find(counter);
  if (it == impl_->labelled.end() || !it->second->counters || delta < 0) return;
  LabelledFamily& family = *it->second;
  const std::optional<prometheus::Labels> named = family.LabelsOf(labels);
  if (!named) return;
  std::lock_guard lock(family.mutex);
  family.counters->Add(*named).Increment(delta);
  family.shown.insert(*named);
}

void Endpoints::SetSeries(std::string_view name, std::span<const Series> series) {
  const auto it = impl_->labelled.find(name);
  if (it == impl_->labelled.end()) return;
  LabelledFamily& family = *it->second;
  std::set<prometheus::Labels> shown;
  std::lock_guard lock(family.mutex);
  for (const Series& s : series) {
    std::optional<prometheus::Labels> named = family.LabelsOf(s.labels);
    if (!named) continue;
    if (family.gauges) {
      family.gauges->Add(*named).Set(s.value);
    } else {
      prometheus::Counter* counter = &family.counters->Add(*named);
      if (s.value < counter->Value()) {
        family.counters->Remove(counter);
        counter = &family.counters->Add(*named);
      }
      counter->Increment(s.value - counter->Value());
    }
    shown.insert(std::move(*named));
  }
  for (const prometheus::Labels& gone : family.shown) {
    if (shown.contains(gone)) continue;
    if (family.gauges) family.gauges->Remove(&family.gauges->Add(gone));
    if (family.counters) family.counters->Remove(&family.counters->Add(gone));
  }
  family.shown = std::move(shown);
}

void Endpoints::Event(std::string data) {
  // An event is one `data:` line: a line break inside would end it early.
  std::ranges::replace(data, '\n', ' ');
  std::ranges::replace(data, '\r', ' ');
  {
    std::lock_guard lock(impl_->events_mutex);
    impl_->event = std::move(data);
    ++impl_->event_number;
  }
  impl_->events_changed.notify_all();
}

std::string Endpoints::Scrape() const { return prometheus::TextSerializer().Serialize(impl_->registry->Collect()); }

Result<std::unique_ptr<Endpoints>> StartIfAsked(std::string_view service, const std::optional<EndpointOptions>& options,
                                                std::vector<MetricSpec> metrics) {
  if (!options) return std::unique_ptr<Endpoints>();
  ASSIGN_OR_RETURN(auto endpoints, Endpoints::Start(*options, std::move(metrics)));
  std::fprintf(stderr, "%.*s: /healthz, /readyz and /metrics on %s:%d\n", static_cast<int>(service.size()),
               service.data(), options->host.c_str(), endpoints->port());
  return endpoints;
}

void SetConsumerReadiness(Endpoints& endpoints, int partitions, bool store_available, std::string_view stuck) {
  if (!stuck.empty()) {
    endpoints.SetReady(false, stuck);
  } else if (!store_available) {
    endpoints.SetReady(false, "the store is unavailable");
  } else if (partitions == 0) {
    endpoints.SetReady(false, "no partitions assigned");
  } else {
    endpoints.SetReady(true, "");
  }
}

void AddGrowth(Endpoints& endpoints, std::string_view counter, std::span<const std::string_view> labels,
               std::span<const int64_t> now, std::span<const int64_t> last) {
  for (size_t i = 0; i < labels.size() && i < now.size() && i < last.size(); ++i) {
    const std::string label(labels[i]);
    endpoints.Add(counter, std::span(&label, 1), static_cast<double>(now[i] - last[i]));
  }
}

std::vector<double> SecondsBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> SizeBuckets() { return {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000}; }

}  // namespace iotinfer::ops
