#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "core/error.h"

namespace iotinfer::cli {

/// What the parsed command line asked for; a subcommand's parse callback stores it here and
/// main runs it after parsing, so that errors reach one place that maps them to exit codes.
using Action = std::function<Status()>;

void AddClassifyCommand(CLI::App& app, Action& action);
void AddDemoCommand(CLI::App& app, Action& action);
void AddProduceCommand(CLI::App& app, Action& action);
void AddInferCommand(CLI::App& app, Action& action);

}  // namespace iotinfer::cli
