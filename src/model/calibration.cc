#include "model/calibration.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace iotinfer::model {

std::string DefaultCalibrationPath(const std::string& model_path) {
  return std::filesystem::path(model_path).replace_extension(".int8.json").string();
}

Result<Calibration> ReadCalibration(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::unexpected(Error::NotFound(fmt::format("calibration {}: cannot open", path)));
  Calibration c;
  try {
    const nlohmann::json doc = nlohmann::json::parse(in);
    c.model_id = doc.at("model").get<std::string>();
    c.images = doc.value("images", "");
    c.activation_ranges = doc.at("activation_ranges").get<std::vector<float>>();
    for (const auto& [bits, margin] : doc.at("recheck_margins").items()) {
      const float value = margin.get<float>();
      if (!(value >= 0.f) || !std::isfinite(value)) {
        return std::unexpected(Error::InvalidInput(fmt::format(
            "calibration {}: recheck margin {} for {}-bit weights is not a number >= 0", path, value, bits)));
      }
      c.recheck_margins[std::stoi(bits)] = value;
    }
  } catch (const std::exception& e) {  // nlohmann::json::exception, and std::stoi's
    return std::unexpected(Error::InvalidInput(fmt::format("calibration {}: {}", path, e.what())));
  }
  return c;
}

Status WriteCalibration(const std::string& path, const Calibration& calibration) {
  nlohmann::ordered_json doc = {{"model", calibration.model_id},
                                {"images", calibration.images},
                                {"activation_ranges", calibration.activation_ranges},
                                {"recheck_margins", nlohmann::ordered_json::object()}};
  for (const auto& [bits, margin] : calibration.recheck_margins) doc["recheck_margins"][std::to_string(bits)] = margin;
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  if (!out.flush()) return std::unexpected(Error::Io(fmt::format("calibration {}: cannot write", path)));
  return Ok();
}

}  // namespace iotinfer::model
