#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iotinfer {

/// Class names in label-index order, as the datasets define them.
inline constexpr std::string_view kFashionMnistClasses[] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
inline constexpr std::string_view kCifar10Classes[] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                       "dog",      "frog",       "horse", "ship", "truck"};

/// Index of `name` in `classes`, or nullopt when it is not one of them. Exact match.
std::optional<int> ClassIndex(std::span<const std::string> classes, std::string_view name);

/// The names as owned strings, for APIs that keep them.
std::vector<std::string> ClassNames(std::span<const std::string_view> names);

}  // namespace iotinfer
