#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "spark/arrow.h"
#include "spark/plan.h"

namespace iotinfer::spark {

/// Where the Spark Connect server is, in Spark's own connection-string format:
/// `sc://HOST[:PORT][/;token=T;user_id=U;use_ssl=true]` (port 15002 by default). A token
/// implies TLS, as in every Spark Connect client, unless the URL says `use_ssl=false`: a
/// server reached over a private network (a pod's Service) may take its token in the clear.
struct Endpoint {
  std::string host;
  int port = 15002;
  std::string token;
  std::string user_id;
  bool use_ssl = false;
  bool use_ssl_given = false;  // the URL set use_ssl

  /// "HOST:PORT", safe to print (never the token).
  std::string Describe() const;
};

/// InvalidInput naming what is wrong with `url`.
Result<Endpoint> ParseEndpoint(std::string_view url);

struct ConnectOptions {
  std::string url = "sc://127.0.0.1:15002";
  /// The server's pre-shared token (Spark's spark.connect.authenticate.token), kept out of the
  /// URL so that it is on no command line: `token_file`'s content (a mounted Secret), else
  /// `token` (IOTINFER_SPARK_TOKEN), else the URL's. It implies TLS as the URL's does.
  std::string token;
  std::string token_file;
  /// PEM roots that the server's certificate must chain to, for a private CA (implies TLS);
  /// empty: the system's.
  std::string ca_file;
  // How long Connect waits for the server to answer before reporting it unreachable.
  std::chrono::milliseconds connect_timeout{10000};
};

/// A streaming query running on the server.
struct StreamingQuery {
  std::string id;      // stable across restarts from the same checkpoint
  std::string run_id;  // this run
  std::string name;
};

struct QueryStatus {
  std::string message;  // "Waiting for data to arrive", "Processing new data", ...
  bool active = false;
  bool data_available = false;
  bool trigger_active = false;
};

/// The fields of Spark's StreamingQueryProgress that people watch.
struct QueryProgress {
  int64_t batch_id = -1;
  int64_t input_rows = 0;
  double input_rows_per_second = 0;
  double processed_rows_per_second = 0;
  int64_t batch_duration_ms = 0;  // durationMs.triggerExecution
  std::string timestamp;          // when the trigger began (ISO 8601, UTC)
  std::string json;               // the whole progress, as Spark reports it
};

/// One Spark Connect session: a server-side SparkSession of its own (temporary views,
/// cached relations and streaming queries live in it). Move-only; closing it releases the
/// session on the server.
class Session {
 public:
  /// Connects and asks the server for its Spark version. Unavailable when no server answers
  /// within connect_timeout.
  static Result<Session> Connect(const ConnectOptions& options);

  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  const std::string& server_version() const;
  const Endpoint& endpoint() const;

  /// Runs `frame` and returns its rows. With `cancel`, setting it interrupts the query on
  /// the server and the call returns FailedPrecondition("... cancelled").
  Result<Table> Collect(const DataFrame& frame, const std::atomic<bool>* cancel = nullptr);
  /// Runs a command (a write, ...) to its end.
  Status Execute(const Plan& plan, const std::atomic<bool>* cancel = nullptr);

  /// Caches `frame` in the server's memory, so that later queries over it reuse its rows.
  Status Persist(const DataFrame& frame, const std::atomic<bool>* cancel = nullptr);
  Status Unpersist(const DataFrame& frame);

  /// Starts the streaming query of a DataFrame::WriteStream plan.
  Result<StreamingQuery> StartStream(const Plan& plan);
  Result<QueryStatus> StatusOf(const StreamingQuery& query);
  /// The progress reports Spark keeps (spark.sql.streaming.numRecentProgressUpdates, 100 by
  /// default), oldest first; empty before the first trigger ends.
  Result<std::vector<QueryProgress>> RecentProgress(const StreamingQuery& query);
  /// Why the query failed, or nullopt while it has not.
  Result<std::optional<std::string>> Exception(const StreamingQuery& query);
  Status Stop(const StreamingQuery& query);

 private:
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Parses the JSON of a StreamingQueryProgress; InvalidInput when it is not one.
Result<QueryProgress> ParseProgress(std::string_view json);

}  // namespace iotinfer::spark
