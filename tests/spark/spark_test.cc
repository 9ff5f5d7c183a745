// The Spark Connect client's parts that need no server: connection strings, progress reports
// and the protocol messages the plan builder produces.
#include <gtest/gtest.h>

#include "spark/client.h"
#include "spark/connect/base.pb.h"
#include "spark/connect/commands.pb.h"
#include "spark/connect/relations.pb.h"
#include "spark/plan.h"

namespace iotinfer::spark {
namespace {

TEST(SparkEndpointTest, ParsesHostPortAndParameters) {
  auto e = ParseEndpoint("sc://spark.example:443/;token=s3cret;user_id=ops;x=y");
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->host, "spark.example");
  EXPECT_EQ(e->port, 443);
  EXPECT_EQ(e->token, "s3cret");
  EXPECT_EQ(e->user_id, "ops");
  EXPECT_TRUE(e->use_ssl) << "a token is only ever sent over TLS";
  EXPECT_EQ(e->Describe(), "spark.example:443");

  auto plain = ParseEndpoint("sc://127.0.0.1");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port, 15002);
  EXPECT_FALSE(plain->use_ssl);

  // Whatever the order, only an explicit use_ssl=false sends a token in the clear.
  for (const char* url : {"sc://h/;use_ssl=false;token=t", "sc://h/;token=t;use_ssl=false"}) {
    auto clear = ParseEndpoint(url);
    ASSERT_TRUE(clear) << url;
    EXPECT_FALSE(clear->use_ssl) << url;
    EXPECT_EQ(clear->token, "t") << url;
  }

  auto v6 = ParseEndpoint("sc://[::1]:15003");
  ASSERT_TRUE(v6) << v6.error().message();
  EXPECT_EQ(v6->host, "[::1]");
  EXPECT_EQ(v6->port, 15003);
}

TEST(SparkEndpointTest, RejectsMalformedUrlsWithoutEchoingTheToken) {
  for (const char* url :
       {"http://host:15002", "sc://", "sc://host:port", "sc://host:99999", "sc://[::1", "sc://host/;token"}) {
    auto e = ParseEndpoint(url);
    ASSERT_FALSE(e) << url;
    EXPECT_EQ(e.error().code(), Error::Code::kInvalidInput) << url;
  }
  auto e = ParseEndpoint("sc://host:x/;token=s3cret");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message().find("s3cret"), std::string::npos) << e.error().message();
}

TEST(SparkProgressTest, ReadsTheFieldsPeopleWatch) {
  auto p = ParseProgress(R"({"id":"q","batchId":7,"numInputRows":1200,"inputRowsPerSecond":400.5,
      "processedRowsPerSecond":"NaN","timestamp":"2026-11-25T10:00:00.000Z",
      "durationMs":{"triggerExecution":812,"addBatch":700}})");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->batch_id, 7);
  EXPECT_EQ(p->input_rows, 1200);
  EXPECT_DOUBLE_EQ(p->input_rows_per_second, 400.5);
  EXPECT_EQ(p->processed_rows_per_second, 0) << "Spark's NaN reads as no rate";
  EXPECT_EQ(p->batch_duration_ms, 812);
  EXPECT_EQ(p->timestamp, "2026-11-25T10:00:00.000Z");

  // As Spark Connect sends it: the totals only per source.
  auto compact = ParseProgress(R"({"batchId":3,"durationMs":{"triggerExecution":50},"sources":[
      {"numInputRows":5000,"inputRowsPerSecond":0.0,"processedRowsPerSecond":2564.1},
      {"numInputRows":7,"inputRowsPerSecond":2.5,"processedRowsPerSecond":1.0}]})");
  ASSERT_TRUE(compact) << compact.error().message();
  EXPECT_EQ(compact->input_rows, 5007);
  EXPECT_DOUBLE_EQ(compact->input_rows_per_second, 2.5);
  EXPECT_DOUBLE_EQ(compact->processed_rows_per_second, 2565.1);

  EXPECT_FALSE(ParseProgress("not json"));
  EXPECT_FALSE(ParseProgress("[1,2]"));
  auto odd = ParseProgress(R"({"batchId":"seven","numInputRows":null})");
  ASSERT_TRUE(odd) << "fields of the wrong type read as absent";
  EXPECT_EQ(odd->batch_id, 0);
  EXPECT_EQ(odd->input_rows, 0);
  EXPECT_EQ(odd->batch_duration_ms, 0);
}

TEST(SparkPlanTest, BuildsTheRelationsPysparkWould) {
  const DataFrame frame = DataFrame::Read("mongodb", "id STRING", {{"collection", "images"}})
                              .Filter(Col("id").IsNotNull())
                              .GroupBy({Col("producer_id")})
                              .Agg({Count(Lit(int64_t{1})).Alias("n")});
  const auto& aggregate = frame.proto().aggregate();
  EXPECT_EQ(aggregate.group_type(), ::spark::connect::Aggregate::GROUP_TYPE_GROUPBY);
  ASSERT_EQ(aggregate.grouping_expressions_size(), 1);
  EXPECT_EQ(aggregate.grouping_expressions(0).unresolved_attribute().unparsed_identifier(), "producer_id");
  EXPECT_EQ(aggregate.aggregate_expressions(0).alias().name(0), "n");
  const auto& filter = aggregate.input().filter();
  EXPECT_EQ(filter.condition().unresolved_function().function_name(), "isnotnull");
  const auto& read = filter.input().read();
  EXPECT_FALSE(read.is_streaming());
  EXPECT_EQ(read.data_source().format(), "mongodb");
  EXPECT_EQ(read.data_source().schema(), "id STRING");
  EXPECT_EQ(read.data_source().options().at("collection"), "images");

  const auto ne = Col("a") != Col("b");
  EXPECT_EQ(ne.proto().unresolved_function().function_name(), "not") << "Spark has no != function";

  const Plan write = frame.Write("mongodb", SaveMode::kOverwrite, {{"database", "d"}});
  EXPECT_EQ(write.proto().command().write_operation().mode(), ::spark::connect::WriteOperation::SAVE_MODE_OVERWRITE);
  EXPECT_EQ(write.proto().command().write_operation().source(), "mongodb");

  const Plan stream = DataFrame::ReadStream("kafka", "", {})
                          .WriteStream({.format = "mongodb",
                                        .output_mode = "complete",
                                        .checkpoint = "/ckpt",
                                        .query_name = "q",
                                        .processing_time = "1 second"});
  const auto& start = stream.proto().command().write_stream_operation_start();
  EXPECT_TRUE(start.input().read().is_streaming());
  EXPECT_EQ(start.output_mode(), "complete");
  EXPECT_EQ(start.options().at("checkpointLocation"), "/ckpt");
  EXPECT_EQ(start.processing_time_interval(), "1 second");
  EXPECT_EQ(start.query_name(), "q");
}

TEST(SparkArrowTest, RejectsBytesThatAreNoArrowStream) {
  const std::vector<std::string> streams{"definitely not arrow"};
  auto table = DecodeArrowStreams(streams);
  ASSERT_FALSE(table);
  EXPECT_EQ(table.error().code(), Error::Code::kInvalidInput);
  EXPECT_FALSE(ArrowVersion().empty());
}

}  // namespace
}  // namespace iotinfer::spark
