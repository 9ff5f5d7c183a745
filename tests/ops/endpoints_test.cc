// The health and metrics endpoints over real HTTP on loopback, read with cpp-httplib's client.
#include "ops/endpoints.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "test_util.h"

namespace iotinfer::ops {
namespace {

using ::testing::HasSubstr;

std::vector<MetricSpec> Specs() {
  return {{MetricSpec::Kind::kCounter, "iotinfer_test_consumed_total", "records read", {}},
          {MetricSpec::Kind::kGauge, "iotinfer_test_lag", "records behind", {}},
          {MetricSpec::Kind::kHistogram, "iotinfer_test_batch_size", "records per batch", SizeBuckets()}};
}

TEST(EndpointsTest, ServeLivenessReadinessAndPrometheusText) {
  auto endpoints = Endpoints::Start({.host = "127.0.0.1", .port = 0}, Specs());
  ASSERT_OK(endpoints);
  ASSERT_GT((*endpoints)->port(), 0);
  httplib::Client client("127.0.0.1", (*endpoints)->port());

  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503) << "not ready until the service says so";
  (*endpoints)->SetReady(false, "no partitions assigned");
  ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_THAT(ready->body, HasSubstr("no partitions assigned"));
  (*endpoints)->SetReady(true, "");
  ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);

  (*endpoints)->Add("iotinfer_test_consumed_total", 41);
  (*endpoints)->Add("iotinfer_test_consumed_total", 1);
  (*endpoints)->Add("iotinfer_test_consumed_total", -5);  // counters never go down
  (*endpoints)->Set("iotinfer_test_lag", 7);
  (*endpoints)->Observe("iotinfer_test_batch_size", 300);
  (*endpoints)->Add("iotinfer_no_such_metric", 1);  // ignored, never fatal
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->get_header_value("Content-Type"), HasSubstr("version=0.0.4"));
  EXPECT_THAT(metrics->body, HasSubstr("# TYPE iotinfer_test_consumed_total counter"));
  EXPECT_THAT(metrics->body, HasSubstr("iotinfer_test_consumed_total 42"));
  EXPECT_THAT(metrics->body, HasSubstr("iotinfer_test_lag 7"));
  EXPECT_THAT(metrics->body, HasSubstr("iotinfer_test_batch_size_bucket{le=\"250\"} 0"));
  EXPECT_THAT(metrics->body, HasSubstr("iotinfer_test_batch_size_bucket{le=\"500\"} 1"));
  EXPECT_THAT(metrics->body, HasSubstr("iotinfer_test_batch_size_count 1"));
  EXPECT_EQ(metrics->body, (*endpoints)->Scrape());
}

TEST(EndpointsTest, LivenessFailsOnceTheMainLoopStopsTurning) {
  auto endpoints = Endpoints::Start({.host = "127.0.0.1", .port = 0, .stall_after = std::chrono::seconds(2)}, Specs());
  ASSERT_OK(endpoints);
  httplib::Client client("127.0.0.1", (*endpoints)->port());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << "a service still starting has not turned its loop yet";

  (*endpoints)->Beat();
  health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_THAT(health->body, HasSubstr("the main loop has not turned for"));
  (*endpoints)->Beat();
  health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST(EndpointsTest, AConsumerWhoseCommitsKeepFailingIsNotReady) {
  auto endpoints = Endpoints::Start({.host = "127.0.0.1", .port = 0}, Specs());
  ASSERT_OK(endpoints);
  httplib::Client client("127.0.0.1", (*endpoints)->port());
  SetConsumerReadiness(**endpoints, 3, true, "5 commits in a row failed over 2 s, the last: too large");
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_THAT(ready->body, HasSubstr("5 commits in a row failed"));
  SetConsumerReadiness(**endpoints, 3, true, "");
  ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
}

TEST(EndpointsTest, ATakenPortIsAClearError) {
  auto first = Endpoints::Start({.port = 0}, {});
  ASSERT_OK(first);
  auto second = Endpoints::Start({.port = (*first)->port()}, {});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), Error::Code::kUnavailable);
  EXPECT_THAT(second.error().message(), HasSubstr(std::to_string((*first)->port())));
}

TEST(EndpointsTest, RejectsMalformedMetricSpecs) {
  auto unsorted = Endpoints::Start({}, {{MetricSpec::Kind::kHistogram, "iotinfer_x", "x", {5, 1}}});
  ASSERT_FALSE(unsorted);
  EXPECT_EQ(unsorted.error().code(), Error::Code::kInvalidInput);
  auto labelled = Endpoints::Start({}, {{MetricSpec::Kind::kHistogram, "iotinfer_x", "x", {1, 5}, {"reason"}}});
  ASSERT_FALSE(labelled);
  EXPECT_EQ(labelled.error().code(), Error::Code::kInvalidInput);
}

TEST(EndpointsTest, LabelledSeriesAreExactlyThoseSet) {
  auto endpoints =
      Endpoints::Start({}, {{MetricSpec::Kind::kCounter, "iotinfer_test_dead_total", "dead letters", {}, {"reason"}},
                            {MetricSpec::Kind::kCounter, "iotinfer_test_images_total", "images", {}, {"producer_id"}},
                            {MetricSpec::Kind::kGauge, "iotinfer_test_rate", "error rate", {}, {"producer_id"}}});
  ASSERT_OK(endpoints);
  Endpoints& e = **endpoints;
  EXPECT_THAT(e.Scrape(), ::testing::Not(HasSubstr("iotinfer_test_dead_total{"))) << "no series until one is made";
  e.Add("iotinfer_test_dead_total", std::vector<std::string>{"undecodable"}, 2);
  e.Add("iotinfer_test_dead_total", std::vector<std::string>{"undecodable"}, 1);
  e.Add("iotinfer_test_dead_total", std::vector<std::string>{"too-large"}, 1);
  e.Add("iotinfer_test_dead_total", std::vector<std::string>{"a", "b"}, 1);  // wrong arity: ignored
  std::string text = e.Scrape();
  EXPECT_THAT(text, HasSubstr("iotinfer_test_dead_total{reason=\"undecodable\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("iotinfer_test_dead_total{reason=\"too-large\"} 1\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("reason=\"a\"")));

  e.SetSeries("iotinfer_test_images_total", std::vector<Series>{{{"1"}, 10}, {{"2"}, 20}, {{"other"}, 5}});
  e.SetSeries("iotinfer_test_rate", std::vector<Series>{{{"1"}, 0.25}, {{"2"}, 0.5}});
  // Device 2 leaves the set, 3 joins, 1 grows, and "other" falls (a reset).
  e.SetSeries("iotinfer_test_images_total", std::vector<Series>{{{"1"}, 12}, {{"3"}, 7}, {{"other"}, 4}});
  e.SetSeries("iotinfer_test_rate", std::vector<Series>{{{"1"}, 0.2}, {{"3"}, 0.1}});
  text = e.Scrape();
  EXPECT_THAT(text, HasSubstr("iotinfer_test_images_total{producer_id=\"1\"} 12\n"));
  EXPECT_THAT(text, HasSubstr("iotinfer_test_images_total{producer_id=\"3\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("iotinfer_test_images_total{producer_id=\"other\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("iotinfer_test_rate{producer_id=\"1\"} 0.2\n"));
  EXPECT_THAT(text, HasSubstr("iotinfer_test_rate{producer_id=\"3\"} 0.1\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("producer_id=\"2\"")));
}

TEST(EndpointsTest, PagesAndEventsAreServed) {
  auto endpoints = Endpoints::Start({.pages = {{"/", "text/html", [] { return std::string("<p>hi</p>"); }}},
                                     .events_path = "/events",
                                     .max_event_clients = 2},
                                    {});
  ASSERT_OK(endpoints);
  const int port = (*endpoints)->port();
  auto page = httplib::Client("127.0.0.1", port).Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->body, "<p>hi</p>");
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html");

  (*endpoints)->Event("{\"n\":1}");
  // A client gets the latest event at once, then each new one; a line break cannot split one.
  std::mutex mutex;
  std::string received;
  std::thread reader([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(std::chrono::seconds(10));
    client.Get("/events", [&](const char* data, size_t size) {
      std::lock_guard lock(mutex);
      received.append(data, size);
      return received.find("\"n\":2") == std::string::npos;
    });
  });
  auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mutex);
        if (received.find(text) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(wait_for("data: {\"n\":1}\n\n"));
  // A second client fits beside it (two at most).
  std::thread second([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(std::chrono::seconds(10));
    client.Get("/events", [&](const char*, size_t) { return false; });
  });
  second.join();
  (*endpoints)->Event("{\"n\":2,\n\"evil\":true}");
  ASSERT_TRUE(wait_for("data: {\"n\":2, \"evil\":true}\n\n"));
  reader.join();
  EXPECT_EQ(httplib::Client("127.0.0.1", port).Get("/healthz")->status, 200) << "probes still answered";
}

TEST(EndpointsTest, EventClientsBeyondTheLimitAreTurnedAway) {
  auto endpoints = Endpoints::Start({.events_path = "/events", .max_event_clients = 1}, {});
  ASSERT_OK(endpoints);
  const int port = (*endpoints)->port();
  (*endpoints)->Event("x");
  std::atomic<bool> connected = false;
  std::thread holder([&] {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(std::chrono::seconds(10));
    client.Get("/events", [&](const char*, size_t) {
      connected = true;
      return true;  // holds the connection until the endpoints stop
    });
  });
  for (int i = 0; i < 500 && !connected; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(connected);
  auto refused = httplib::Client("127.0.0.1", port).Get("/events");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(httplib::Client("127.0.0.1", port).Get("/healthz")->status, 200);
  endpoints->reset();  // ends the held stream
  holder.join();
}

}  // namespace
}  // namespace iotinfer::ops
