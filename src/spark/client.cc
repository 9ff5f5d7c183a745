#include "spark/client.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include <charconv>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "core/text.h"
#include "spark/connect/base.grpc.pb.h"
#include "spark/connect/base.pb.h"
#include "spark/connect/commands.pb.h"
#include "spark/tls_probe.h"

namespace iotinfer::spark {
namespace {

namespace pb = ::spark::connect;

constexpr std::string_view kClientType = "iotinfer";
// Results of a collect arrive in one message per Arrow batch; Spark sends batches of up to
// 4 MiB by default, which is gRPC's default receive limit. pyspark allows 128 MiB too.
constexpr int kMaxMessageBytes = 128 * 1024 * 1024;

std::string NewUuid() {
  std::random_device device;
  std::mt19937_64 random(static_cast<uint64_t>(device()) << 32 | device());
  uint64_t high = random(), low = random();
  high = (high & ~0xF000ULL) | 0x4000ULL;            // version 4
  low = (low & ~(0xC0ULL << 56)) | (0x80ULL << 56);  // RFC 4122 variant
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", high >> 32, (high >> 16) & 0xFFFF, high & 0xFFFF, low >> 48,
                     low & 0xFFFFFFFFFFFFULL);
}

bool ParseBool(std::string_view value) { return value == "true" || value == "1"; }

// While alive, watches *cancel (when given) and calls on_cancel once it turns true: a call
// blocked in gRPC cannot look at the flag itself.
class CancelWatch {
 public:
  template <typename OnCancel>
  CancelWatch(const std::atomic<bool>* cancel, OnCancel on_cancel) {
    if (!cancel) return;
    thread_ = std::jthread([this, cancel, on_cancel] {
      while (!done_.load()) {
        if (cancel->load()) {
          on_cancel();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~CancelWatch() { done_ = true; }

 private:
  std::atomic<bool> done_{false};
  std::jthread thread_;  // last: joined before done_ is destroyed
};

}  // namespace

std::string Endpoint::Describe() const { return fmt::format("{}:{}", host, port); }

Result<Endpoint> ParseEndpoint(std::string_view url) {
  constexpr std::string_view kScheme = "sc://";
  auto invalid = [&](std::string_view why) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("Spark Connect URL '{}': {} (expected sc://HOST[:PORT][/;token=...;user_id=...;use_ssl=true])",
                    url.substr(0, url.find(';')), why)));
  };
  if (!url.starts_with(kScheme)) return invalid("it must start with sc://");
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view params = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  Endpoint endpoint;
  // An IPv6 host is bracketed ([::1]:15002); its colons are not the port's.
  const size_t bracket = authority.starts_with('[') ? authority.find(']') : 0;
  if (bracket == std::string_view::npos) return invalid("unclosed '['");
  if (const size_t colon = authority.find(':', bracket); colon != std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), endpoint.port);
    if (ec != std::errc() || end != port.data() + port.size() || endpoint.port <= 0 || endpoint.port > 65535) {
      return invalid(fmt::format("'{}' is not a port", port));
    }
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return invalid("no host");
  endpoint.host = std::string(authority);
  while (!params.empty()) {
    const size_t semi = params.find(';');
    std::string_view param = params.substr(0, semi);
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    if (param.empty()) continue;
    const size_t eq = param.find('=');
    if (eq == std::string_view::npos) return invalid(fmt::format("parameter '{}' has no value", param));
    const std::string_view key = param.substr(0, eq), value = param.substr(eq + 1);
    if (key == "token") {
      endpoint.token = std::string(value);
    } else if (key == "user_id") {
      endpoint.user_id = std::string(value);
    } else if (key == "use_ssl") {
      endpoint.use_ssl = ParseBool(value);
      endpoint.use_ssl_given = true;
    }
    // Other parameters (session_id, user_agent, ...) are Spark's and not needed here.
  }
  if (!endpoint.token.empty() && !endpoint.use_ssl_given) endpoint.use_ssl = true;
  if (endpoint.user_id.empty()) {
    const char* user = std::getenv("USER");
    endpoint.user_id = user && *user ? user : "iotinfer";
  }
  return endpoint;
}

struct Session::Impl {
  Endpoint endpoint;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::SparkConnectService::Stub> stub;
  std::string session_id = NewUuid();
  std::string server_version;

  void Prepare(grpc::ClientContext& context) const {
    if (!endpoint.token.empty()) context.AddMetadata("authorization", "Bearer " + endpoint.token);
  }

  template <typename Request>
  void Fill(Request& request) const {
    request.set_session_id(session_id);
    request.mutable_user_context()->set_user_id(endpoint.user_id);
    request.set_client_type(std::string(kClientType));
  }

  // Spark's errors (analysis errors included) arrive as the status message, which begins
  // with Spark's error class: "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column ...".
  Error FromStatus(const grpc::Status& status, std::string_view what) const {
    const std::string message = status.error_message();
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return Error::Unavailable(
            fmt::format("{}: Spark Connect server at {} is unreachable: {}", what, endpoint.Describe(), message));
      case grpc::StatusCode::CANCELLED:
        return Error::FailedPrecondition(fmt::format("{}: cancelled", what));
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
        return Error::PermissionDenied(fmt::format("{}: Spark Connect refused the credentials: {}", what, message));
      case grpc::StatusCode::INVALID_ARGUMENT:
      case grpc::StatusCode::NOT_FOUND:
      case grpc::StatusCode::ALREADY_EXISTS:
      case grpc::StatusCode::FAILED_PRECONDITION:
      case grpc::StatusCode::OUT_OF_RANGE:
        return Error::InvalidInput(fmt::format("{}: Spark: {}", what, message));
      default:
        return Error::Internal(fmt::format("{}: Spark: {}", what, message));
    }
  }

  // Runs `plan` and hands each response to `on_response`. A watcher interrupts the
  // operation on the server (and cancels the call) once *cancel turns true.
  template <typename OnResponse>
  iotinfer::Status Run(const pb::Plan& plan, std::string_view what, const std::atomic<bool>* cancel,
                       OnResponse&& on_response) {
    pb::ExecutePlanRequest request;
    Fill(request);
    const std::string operation_id = NewUuid();
    request.set_operation_id(operation_id);
    *request.mutable_plan() = plan;
    grpc::ClientContext context;
    Prepare(context);
    grpc::Status status;
    std::optional<Error> failed;
    {
      CancelWatch watch(cancel, [&] {
        Interrupt(operation_id);
        context.TryCancel();
      });
      auto reader = stub->ExecutePlan(&context, request);
      pb::ExecutePlanResponse response;
      while (reader->Read(&response)) {
        if (failed) continue;  // drain, so that Finish reports the call's own status
        if (auto handled = on_response(response); !handled) failed = handled.error();
      }
      status = reader->Finish();
    }
    if (cancel && cancel->load()) return std::unexpected(Error::FailedPrecondition(fmt::format("{}: cancelled", what)));
    if (!status.ok()) return std::unexpected(FromStatus(status, what));
    if (failed) return std::unexpected(*failed);
    return Ok();
  }

  void Interrupt(const std::string& operation_id) {
    pb::InterruptRequest request;
    Fill(request);
    request.set_interrupt_type(pb::InterruptRequest::INTERRUPT_TYPE_OPERATION_ID);
    request.set_operation_id(operation_id);
    pb::InterruptResponse response;
    grpc::ClientContext context;
    Prepare(context);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    (void)stub->Interrupt(&context, request, &response);  // best effort: the call is cancelled anyway
  }

  // Analysis can take long too: caching a relation plans its reads, which for the MongoDB
  // connector means queries to the store. Cancelling abandons the call; the server finishes
  // that planning on its own.
  Result<pb::AnalyzePlanResponse> Analyze(pb::AnalyzePlanRequest& request, std::string_view what,
                                          const std::atomic<bool>* cancel = nullptr) {
    Fill(request);
    pb::AnalyzePlanResponse response;
    grpc::ClientContext context;
    Prepare(context);
    grpc::Status status;
    {
      CancelWatch watch(cancel, [&] { context.TryCancel(); });
      status = stub->AnalyzePlan(&context, request, &response);
    }
    if (cancel && cancel->load()) return std::unexpected(Error::FailedPrecondition(fmt::format("{}: cancelled", what)));
    if (!status.ok()) return std::unexpected(FromStatus(status, what));
    return response;
  }

  // A StreamingQueryCommand and its one result.
  template <typename SetCommand>
  Result<pb::StreamingQueryCommandResult> QueryCommand(const StreamingQuery& query, std::string_view what,
                                                       SetCommand&& set_command) {
    pb::Plan plan;
    auto* command = plan.mutable_command()->mutable_streaming_query_command();
    command->mutable_query_id()->set_id(query.id);
    command->mutable_query_id()->set_run_id(query.run_id);
    set_command(*command);
    pb::StreamingQueryCommandResult result;
    TRY(Run(plan, what, nullptr, [&](const pb::ExecutePlanResponse& response) -> iotinfer::Status {
      if (response.has_streaming_query_command_result()) result = response.streaming_query_command_result();
      return Ok();
    }));
    return result;
  }
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Session::~Session() {
  if (!impl_) return;
  // Frees the server-side session (its cached relations, and streaming queries still running
  // in it) now instead of after the server's idle timeout.
  pb::ReleaseSessionRequest request;
  impl_->Fill(request);
  pb::ReleaseSessionResponse response;
  grpc::ClientContext context;
  impl_->Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  (void)impl_->stub->ReleaseSession(&context, request, &response);
}

Result<Session> Session::Connect(const ConnectOptions& options) {
  ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(options.url));
  if (!options.token_file.empty()) {
    ASSIGN_OR_RETURN(endpoint.token, ReadSecretFile(options.token_file, "Spark Connect token"));
  } else if (!options.token.empty()) {
    endpoint.token = options.token;
  }
  grpc::SslCredentialsOptions tls;
  if (!options.ca_file.empty()) {
    ASSIGN_OR_RETURN(tls.pem_root_certs, ReadSecretFile(options.ca_file, "Spark Connect CA"));
  }
  if ((!endpoint.token.empty() && !endpoint.use_ssl_given) || !options.ca_file.empty()) endpoint.use_ssl = true;
  auto impl = std::make_unique<Impl>();
  impl->endpoint = endpoint;
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);
  const auto credentials = endpoint.use_ssl ? grpc::SslCredentials(tls) : grpc::InsecureChannelCredentials();
  impl->channel = grpc::CreateCustomChannel(endpoint.Describe(), credentials, arguments);
  if (!impl->channel->WaitForConnected(std::chrono::system_clock::now() + options.connect_timeout)) {
    if (endpoint.use_ssl) {
      const auto probe_timeout = std::min(options.connect_timeout, std::chrono::milliseconds(5000));
      if (std::optional<Error> refused =
              TlsHandshakeError(endpoint.host, endpoint.port, tls.pem_root_certs, probe_timeout)) {
        return std::unexpected(*refused);
      }
    }
    return std::unexpected(Error::Unavailable(fmt::format("no Spark Connect server answers at {} (waited {} ms)",
                                                          endpoint.Describe(), options.connect_timeout.count())));
  }
  impl->stub = pb::SparkConnectService::NewStub(impl->channel);
  pb::AnalyzePlanRequest request;
  request.mutable_spark_version();
  ASSIGN_OR_RETURN(auto response, impl->Analyze(request, "asking the Spark version"));
  impl->server_version = response.spark_version().version();
  return Session(std::move(impl));
}

const std::string& Session::server_version() const { return impl_->server_version; }
const Endpoint& Session::endpoint() const { return impl_->endpoint; }

Result<Table> Session::Collect(const DataFrame& frame, const std::atomic<bool>* cancel) {
  std::vector<std::string> batches;
  TRY(impl_->Run(frame.ToPlan().proto(), "running a query", cancel, [&](const pb::ExecutePlanResponse& response) {
    if (response.has_arrow_batch()) batches.push_back(response.arrow_batch().data());
    return Ok();
  }));
  return DecodeArrowStreams(batches);
}

Status Session::Execute(const Plan& plan, const std::atomic<bool>* cancel) {
  return impl_->Run(plan.proto(), "running a command", cancel, [](const pb::ExecutePlanResponse&) { return Ok(); });
}

Status Session::Persist(const DataFrame& frame, const std::atomic<bool>* cancel) {
  pb::AnalyzePlanRequest request;
  *request.mutable_persist()->mutable_relation() = frame.proto();
  TRY(impl_->Analyze(request, "caching a relation", cancel));
  return Ok();
}

Status Session::Unpersist(const DataFrame& frame) {
  pb::AnalyzePlanRequest request;
  *request.mutable_unpersist()->mutable_relation() = frame.proto();
  TRY(impl_->Analyze(request, "uncaching a relation"));
  return Ok();
}

Result<StreamingQuery> Session::StartStream(const Plan& plan) {
  std::optional<StreamingQuery> query;
  TRY(impl_->Run(plan.proto(), "starting a streaming query", nullptr, [&](const pb::ExecutePlanResponse& response) {
    if (response.has_write_stream_operation_start_result()) {
      const auto& started = response.write_stream_operation_start_result();
      query = StreamingQuery{started.query_id().id(), started.query_id().run_id(), started.name()};
    }
    return Ok();
  }));
  if (!query) return std::unexpected(Error::Internal("starting a streaming query: the server returned no query id"));
  return *query;
}

Result<QueryStatus> Session::StatusOf(const StreamingQuery& query) {
  ASSIGN_OR_RETURN(auto result, impl_->QueryCommand(query, "asking a streaming query's status",
                                                    [](pb::StreamingQueryCommand& c) { c.set_status(true); }));
  const auto& s = result.status();
  return QueryStatus{s.status_message(), s.is_active(), s.is_data_available(), s.is_trigger_active()};
}

Result<std::vector<QueryProgress>> Session::RecentProgress(const StreamingQuery& query) {
  ASSIGN_OR_RETURN(auto result, impl_->QueryCommand(query, "asking a streaming query's progress",
                                                    [](pb::StreamingQueryCommand& c) { c.set_recent_progress(true); }));
  std::vector<QueryProgress> reports;
  for (const std::string& json : result.recent_progress().recent_progress_json()) {
    ASSIGN_OR_RETURN(QueryProgress progress, ParseProgress(json));
    reports.push_back(std::move(progress));
  }
  return reports;
}

Result<std::optional<std::string>> Session::Exception(const StreamingQuery& query) {
  ASSIGN_OR_RETURN(auto result, impl_->QueryCommand(query, "asking why a streaming query failed",
                                                    [](pb::StreamingQueryCommand& c) { c.set_exception(true); }));
  if (!result.exception().has_exception_message()) return std::optional<std::string>();
  return std::optional<std::string>(result.exception().exception_message());
}

Status Session::Stop(const StreamingQuery& query) {
  TRY(impl_->QueryCommand(query, "stopping a streaming query", [](pb::StreamingQueryCommand& c) { c.set_stop(true); }));
  return Ok();
}

Result<QueryProgress> ParseProgress(std::string_view json) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return std::unexpected(Error::InvalidInput("a streaming progress report is not a JSON object"));
  }
  // Fields of the wrong type read as absent (NaN rates arrive as the string "NaN").
  auto integer = [](const nlohmann::json& object, const char* key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_number() ? it->get<int64_t>() : int64_t{0};
  };
  auto number = [](const nlohmann::json& object, const char* key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_number() ? it->get<double>() : 0.0;
  };
  QueryProgress p;
  p.batch_id = doc.contains("batchId") ? integer(doc, "batchId") : -1;
  // The totals are sums over the sources; Spark's own log shows them, its JSON may not.
  if (doc.contains("numInputRows")) {
    p.input_rows = integer(doc, "numInputRows");
    p.input_rows_per_second = number(doc, "inputRowsPerSecond");
    p.processed_rows_per_second = number(doc, "processedRowsPerSecond");
  } else if (const auto sources = doc.find("sources"); sources != doc.end() && sources->is_array()) {
    for (const auto& source : *sources) {
      if (!source.is_object()) continue;
      p.input_rows += integer(source, "numInputRows");
      p.input_rows_per_second += number(source, "inputRowsPerSecond");
      p.processed_rows_per_second += number(source, "processedRowsPerSecond");
    }
  }
  if (const auto it = doc.find("durationMs"); it != doc.end() && it->is_object()) {
    p.batch_duration_ms = integer(*it, "triggerExecution");
  }
  if (const auto it = doc.find("timestamp"); it != doc.end() && it->is_string()) p.timestamp = it->get<std::string>();
  p.json = std::string(json);
  return p;
}

}  // namespace iotinfer::spark
