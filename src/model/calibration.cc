#include "model/calibration.h"

#include <fmt/format.h>

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
  } catch (const nlohmann::json::exception& e) {
    return std::unexpected(Error::InvalidInput(fmt::format("calibration {}: {}", path, e.what())));
  }
  return c;
}

Status WriteCalibration(const std::string& path, const Calibration& calibration) {
  const nlohmann::ordered_json doc = {{"model", calibration.model_id},
                                      {"images", calibration.images},
                                      {"activation_ranges", calibration.activation_ranges}};
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  if (!out.flush()) return std::unexpected(Error::Io(fmt::format("calibration {}: cannot write", path)));
  return Ok();
}

}  // namespace iotinfer::model
