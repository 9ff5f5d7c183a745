#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "process_util.h"

namespace {

using iotinfer::testing::CommandRun;
using iotinfer::testing::Iotinfer;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(CliTest, ClassifyPrintsAccuracyPerClassTableAndThroughput) {
  CommandRun run =
      Iotinfer("classify --dataset fashion-mnist --split test --limit 1000 --producers 2 --faults 1:blur=2");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("1000 images of fashion-mnist"));
  EXPECT_THAT(run.output, ::testing::ContainsRegex("accuracy [0-9.]+%"));
  EXPECT_THAT(run.output, ::testing::ContainsRegex("throughput [0-9]+ images/s"));
  EXPECT_THAT(run.output, HasSubstr("Sneaker"));
  EXPECT_THAT(run.output, HasSubstr("blur=2"));
}

// What `calibrate` writes is what `--engine onednn-int8` reads.
TEST(CliTest, CalibrateThenClassifyInInt8) {
  char dir[] = "/tmp/iotinfer-cli-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string calibration = std::string(dir) + "/c.json";
  CommandRun calibrate = Iotinfer("calibrate --limit 2000 --out " + calibration);
  EXPECT_EQ(calibrate.exit_code, 0) << calibrate.output;
  EXPECT_THAT(calibrate.output, HasSubstr("on 2000 train images"));
  EXPECT_THAT(calibrate.output,
              ::testing::ContainsRegex("recheck margins paired weights \\(CPUs without VNNI\\) 0\\.[0-9]+, 8-bit"));
  EXPECT_THAT(calibrate.output, HasSubstr("wrote " + calibration));
  // Checked on the other split at once.
  EXPECT_THAT(calibrate.output, ::testing::ContainsRegex("checked on 10000 test images: int8 with its rechecks "
                                                         "agrees with float32 on [0-9]+ \\((100|9[0-9])\\.[0-9]+%\\)"));
  CommandRun classify = Iotinfer("classify --limit 1000 --engine onednn-int8 --calibration " + calibration);
  EXPECT_EQ(classify.exit_code, 0) << classify.output;
  EXPECT_THAT(classify.output, HasSubstr("onednn-int8"));
  EXPECT_THAT(classify.output, ::testing::ContainsRegex("classified again in float32: [1-9][0-9]* \\("));
  EXPECT_THAT(classify.output, ::testing::ContainsRegex("accuracy (9[0-9]|8[5-9])\\.[0-9]+%"));
  std::system((std::string("rm -rf ") + dir).c_str());
}

// What `augment` writes is a dataset the other commands read.
TEST(CliTest, AugmentWritesADatasetClassifyReads) {
  char dir[] = "/tmp/iotinfer-cli-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  CommandRun augment = Iotinfer(std::string("augment --split test --limit 500 --copies 2 --seed 3 --out ") + dir);
  EXPECT_EQ(augment.exit_code, 0) << augment.output;
  EXPECT_THAT(augment.output, HasSubstr("wrote 1000 images (2 copies of 500 fashion-mnist test images, seed 3)"));
  EXPECT_THAT(augment.output, ::testing::ContainsRegex("occlude +[0-9]+  0.05-0.35"));
  CommandRun classify = Iotinfer(std::string("classify --data-dir ") + dir);
  EXPECT_EQ(classify.exit_code, 0) << classify.output;
  EXPECT_THAT(classify.output, HasSubstr("1000 images of fashion-mnist"));
  std::system((std::string("rm -rf ") + dir).c_str());
}

TEST(CliTest, EverySubcommandHasHelp) {
  for (const auto& [sub, flag] : {std::pair{"classify", "--model"},
                                  {"calibrate", "--out"},
                                  {"augment", "--copies"},
                                  {"demo", "--store"},
                                  {"produce", "--faults"},
                                  {"batch", "--engine"},
                                  {"stream", "--window"},
                                  {"report results", "--windows"},
                                  {"dlq stats", "--bucket"},
                                  {"dlq show", "--limit"},
                                  {"dlq replay", "--dry-run"}}) {
    CommandRun run = Iotinfer(std::string(sub) + " --help");
    EXPECT_EQ(run.exit_code, 0) << sub;
    EXPECT_THAT(run.output, HasSubstr(flag)) << sub;
  }
  EXPECT_THAT(Iotinfer("--help").output, HasSubstr("classify"));
}

TEST(CliTest, BadInputGivesAMessageAndExitCodeTwo) {
  struct Case {
    const char* args;
    const char* message;
  } cases[] = {
      {"classify --dataset mnist", "unknown dataset 'mnist'"},
      {"classify --split validation", "unknown split 'validation'"},
      {"classify --faults 3:fog=1", "unknown fault 'fog'"},
      {"classify --model /nonexistent.onnx", "/nonexistent.onnx"},
      {"classify --data-dir /nonexistent", "/nonexistent/t10k-images-idx3-ubyte.gz: no such file"},
      {"classify --engine onednn-int8 --calibration /nonexistent.json", "make one with `iotinfer calibrate"},
      {"calibrate --split validation", "unknown split 'validation'"},
      {"augment --split validation --out /tmp/never", "unknown split 'validation'"},
      {"augment --copies 0 --out /tmp/never", "--copies: must be positive, got 0"},
      {"augment --second-fault 2 --out /tmp/never", "--second-fault"},
      {"augment --copies 2", "--out is required"},
      {"augment --data-dir /nonexistent --out /tmp/never", "/nonexistent/train-images-idx3-ubyte.gz: no such file"},
      {"produce", "give --images or --duration"},
      {"produce --images 5 --format gif", "unknown --format 'gif'"},
      {"produce --images 5 --kafka novalue", "--kafka expects KEY=VALUE"},
      {"produce --images 5 --linger-ms -1", "--linger-ms: must not be negative, got -1"},
      {"infer --kafka-config /nonexistent/kafka.properties",
       "--kafka-config /nonexistent/kafka.properties: cannot be read"},
      {"produce --images 5 --faults 1:fog=2", "unknown fault 'fog'"},
      {"batch --engine hadoop --out ''", "unknown engine 'hadoop'"},
      {"batch --store postgres://db --out ''", "neither sqlite:PATH nor mongodb://"},
      {"stream --window 5q", "'5q' is not a duration"},
      {"stream --window 500ms", "--window must be at least 1s"},
      {"batch --engine spark --store sqlite:never-created.db --out ''", "is not a MongoDB URI"},
      {"batch --engine spark --spark http://spark:15002 --store mongodb://127.0.0.1:1 --out ''",
       "it must start with sc://"},
      {"stream --engine flink", "unknown engine 'flink'"},
      {"stream --engine spark --spark sc://spark.example --store mongodb://127.0.0.1:1",
       "--checkpoint is required with a remote Spark server"},
      {"stream --engine spark --trigger soon", "'soon' is not a duration"},
      {"report health --limit -1", "--limit: must not be negative, got -1"},
      {"demo --images -1", "--images: must be positive"},
      {"report health --no-such-flag", "The following argument was not expected: --no-such-flag"},
      {"report", "A subcommand is required"},
      // Checked before any cluster is asked.
      {"dlq show --reason too-big", "--reason 'too-big' is no reason code; they are: unreadable-record, "},
      {"dlq show --producer -3", "--producer '-3' is neither a producer id"},
      {"dlq stats --bucket 10ms", "--bucket 10ms is shorter than a second"},
      {"dlq stats --bucket soon", "--bucket: 'soon' is not a duration"},
      {"dlq replay --since yesterday", "--since: 'yesterday' is not a time"},
      {"dlq replay --since 2026-01-02 --until 2026-01-01", "is not before --until"},
  };
  for (const auto& c : cases) {
    CommandRun run = Iotinfer(c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.message)) << c.args;
    // CLI11's own messages end with a pointer to --help instead.
    EXPECT_THAT(run.output, ::testing::AnyOf(HasSubstr("iotinfer: "), HasSubstr("Run with --help"))) << c.args;
  }
}

// A flag the chosen engine has no use for is named at start, not dropped in silence; the
// stream still runs (here it then fails on purpose: no store, no Spark server).
TEST(CliTest, AStreamNamesTheFlagsItsEngineDoesNotUse) {
  CommandRun native = Iotinfer("stream --trigger 2s --checkpoint /tmp/x --store postgres://db", 30);
  EXPECT_EQ(native.exit_code, 2) << native.output;
  EXPECT_THAT(native.output, HasSubstr("stream: the native engine does not use --checkpoint, --trigger"));
  CommandRun spark = Iotinfer(
      "stream --engine spark --group g --window 1m --spark sc://127.0.0.1:1 --spark-wait 0 --store postgres://db", 60);
  EXPECT_THAT(spark.output, HasSubstr("stream: the spark engine does not use --group, --window"));
  CommandRun quiet = Iotinfer("stream --store postgres://db", 30);
  EXPECT_THAT(quiet.output, Not(HasSubstr("does not use")));
}

TEST(CliTest, BatchThenReportResultsOnAnEmptySqliteStore) {
  char dir[] = "/tmp/iotinfer-cli-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string store = std::string("--store sqlite:") + dir + "/x.db";
  CommandRun batch = Iotinfer("batch " + store + " --out " + dir + "/out");
  EXPECT_EQ(batch.exit_code, 0) << batch.output;
  EXPECT_THAT(batch.output, HasSubstr("no results: the store holds no inference records"));
  EXPECT_THAT(batch.output, HasSubstr("/out/results.csv"));
  CommandRun report = Iotinfer("report results " + store);
  EXPECT_EQ(report.exit_code, 0) << report.output;
  EXPECT_THAT(report.output, HasSubstr("no results"));
  EXPECT_THAT(Iotinfer("report results --windows " + store).output, HasSubstr("no window results"));
  std::system((std::string("rm -rf ") + dir).c_str());
}

TEST(CliTest, UnknownFlagsAreUsageErrors) {
  CommandRun run = Iotinfer("classify --no-such-flag");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("no-such-flag"));
}

// Refused before anything starts. A negative --max-payload-bytes used to wrap to 2^64 - 1 and
// quietly lift the limit that keeps oversized images out.
TEST(CliTest, NegativeCountsAndTimesAreUsageErrors) {
  for (const std::string args :
       {"infer --max-payload-bytes -1", "infer --max-payload-bytes 0", "infer --batch-wait-ms -5", "infer --threads -2",
        "infer --log-every-ms -1", "sink --log-every-ms -1", "stream --log-every-ms -1", "classify --limit -3",
        "classify --threads -1", "demo --threads -1"}) {
    CommandRun run = Iotinfer(args + " --brokers 127.0.0.1:1", 30);
    EXPECT_NE(run.exit_code, 0) << args;
    EXPECT_THAT(run.output, HasSubstr(args.substr(args.find("--"), args.rfind(' ') - args.find("--")))) << args;
  }
}

}  // namespace
