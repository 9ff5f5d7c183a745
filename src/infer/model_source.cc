#include "infer/model_source.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>

#include "core/text.h"

namespace iotinfer::infer {
namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, kModelRefusals> kRefusalNames = {"unreadable", "incompatible", "calibration",
                                                                        "unknown-version"};

// What a model file looked like. Another look is another model, to be hashed and loaded again;
// the path is the file's own, links resolved, so that a flipped link is another look too.
struct Look {
  std::string path;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;

  bool operator==(const Look&) const = default;
  auto operator<=>(const Look&) const = default;
};

std::optional<Look> LookAt(const fs::path& path) {
  std::error_code ec;
  const fs::path resolved = fs::canonical(path, ec);
  struct stat st {};
  if (ec || ::stat(resolved.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return Look{.path = resolved.string(),
              .size = st.st_size,
              .mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
              .inode = st.st_ino,
              .device = st.st_dev};
}

ModelRefusal RefusalOf(model::ModelFault fault) {
  switch (fault) {
    case model::ModelFault::kUnreadable:
      return ModelRefusal::kUnreadable;
    case model::ModelFault::kIncompatible:
      return ModelRefusal::kIncompatible;
    case model::ModelFault::kCalibration:
      return ModelRefusal::kCalibration;
  }
  return ModelRefusal::kUnreadable;
}

// A model file the source knows of now.
struct Candidate {
  std::string name;  // as listed: DIR/entry, or the path given
  bool in_dir = false;
  Look look;
  std::string version;   // empty when the file could not be read
  bool settled = false;  // looked the same on the previous look
};

}  // namespace

std::string_view RefusalName(ModelRefusal refusal) { return kRefusalNames[static_cast<size_t>(refusal)]; }

const std::array<std::string_view, kModelRefusals>& RefusalNames() { return kRefusalNames; }

struct ModelSource::Impl {
  ModelSourceOptions options;
  std::string initial_path;  // resolved options.classifier.model_path, which alone has its calibration_path

  // The watcher's own state (Start's, before the watcher runs).
  std::map<std::string, std::pair<Look, std::string>> versions;  // resolved path -> its look when hashed, version
  std::map<std::string, Look> previous;                          // listed name -> its look on the previous poll
  std::set<Look> refused_looks;                                  // not tried again until they change
  std::set<std::string> refused_names;                           // chosen or named versions found nowhere
  std::string previous_active;                                   // DIR/active's text on the previous poll
  std::optional<std::string> chosen;
  std::chrono::steady_clock::time_point next_choice;  // when to ask for the chosen version again
  std::string last_choice_error;
  std::string serving;  // the version serving, or handed over to serve next

  std::mutex mutex;
  std::unique_ptr<model::Classifier> next;  // guarded by mutex
  std::array<std::atomic<int64_t>, kModelRefusals> refused{};

  std::jthread watcher;  // last: stopped and joined before the rest goes

  void Log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  void Refuse(ModelRefusal why, const std::string& what) {
    refused[static_cast<size_t>(why)]++;
    Log(fmt::format("model refused ({}): {}; {}", RefusalName(why), what,
                    serving.empty() ? std::string("none serving yet") : fmt::format("still serving {}", serving)));
  }

  std::string VersionOf(const Look& look) {
    auto it = versions.find(look.path);
    if (it != versions.end() && it->second.first == look) return it->second.second;
    Result<std::string> version = model::ModelId(look.path);
    if (!version) return {};
    versions[look.path] = {look, *version};
    return *version;
  }

  // Every model file known now: the directory's, the configured model when there is no
  // directory, and the further ones a choice may name.
  std::vector<Candidate> Catalogue() {
    std::vector<std::pair<std::string, bool>> names;
    if (!options.model_dir.empty()) {
      std::error_code ec;
      for (fs::directory_iterator it(options.model_dir, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::path& path = it->path();
        const std::string file = path.filename().string();
        if (!file.starts_with(".") && path.extension() == ".onnx") names.emplace_back(path.string(), true);
      }
    } else {
      names.emplace_back(initial_path, false);
    }
    for (const std::string& known : options.known_models) names.emplace_back(known, false);

    std::vector<Candidate> catalogue;
    std::map<std::string, Look> seen;
    for (const auto& [name, in_dir] : names) {
      std::optional<Look> look = LookAt(name);
      if (!look) continue;  // gone since listed, or not a file: nothing to load
      Candidate c{.name = name, .in_dir = in_dir, .look = *look, .version = VersionOf(*look)};
      auto before = previous.find(name);
      c.settled = before != previous.end() && before->second == c.look;
      seen[name] = c.look;
      catalogue.push_back(std::move(c));
    }
    previous = std::move(seen);
    // Each ConfigMap update is a new directory: forget the files that are gone.
    std::erase_if(versions, [&](const auto& entry) {
      return std::ranges::none_of(catalogue, [&](const Candidate& c) { return c.look.path == entry.first; });
    });
    return catalogue;
  }

  // The model that should serve, or none when it stays as it is. `settle`: act on DIR/active
  // only once it reads the same twice, as a model file must look (it may be half-written).
  std::optional<Candidate> Decide(const std::vector<Candidate>& catalogue, bool settle = true) {
    const auto now = std::chrono::steady_clock::now();
    if (options.chosen_version && now >= next_choice) {
      next_choice = now + options.choice_poll;
      Result<std::optional<std::string>> answer = options.chosen_version();
      if (answer) {
        chosen = *answer;
        last_choice_error.clear();
      } else if (answer.error().message() != last_choice_error) {
        last_choice_error = answer.error().message();
        Log(fmt::format("cannot read which model version is chosen ({}); the last answer stands", last_choice_error));
      }
    }
    auto named = [&](const std::string& name, auto&& matches) -> std::optional<Candidate> {
      for (const Candidate& c : catalogue) {
        if (matches(c)) return c;
      }
      if (refused_names.insert(name).second) {
        Refuse(ModelRefusal::kUnknownVersion, fmt::format("{} is named, but no model file here is it", name));
      }
      return std::nullopt;
    };
    if (chosen) {
      return named(*chosen, [&](const Candidate& c) { return c.version == *chosen; });
    }
    if (options.model_dir.empty()) {
      for (const Candidate& c : catalogue) {
        if (c.name == initial_path) return c;
      }
      return std::nullopt;
    }
    const fs::path active_file =
        options.active_file.empty() ? fs::path(options.model_dir) / "active" : fs::path(options.active_file);
    if (std::ifstream in(active_file); in) {
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const std::string name(Trim(text, " \t\r\n"));
      const bool settled = name == previous_active;
      previous_active = name;
      if (settle && !settled) return std::nullopt;
      if (!name.empty()) {
        return named(name, [&](const Candidate& c) {
          return c.in_dir && (c.version == name || fs::path(c.name).filename() == name);
        });
      }
    }
    const Candidate* newest = nullptr;
    for (const Candidate& c : catalogue) {
      if (c.in_dir && (!newest || std::tie(c.look.mtime_ns, c.name) > std::tie(newest->look.mtime_ns, newest->name))) {
        newest = &c;
      }
    }
    if (newest) return *newest;
    return std::nullopt;
  }

  // Loads `c` off the service's path; true when it is handed over.
  bool Load(const Candidate& c) {
    model::ClassifierOptions o = options.classifier;
    o.model_path = c.look.path;
    if (c.look.path != initial_path) o.calibration_path.clear();
    const auto start = std::chrono::steady_clock::now();
    model::ModelFault fault = model::ModelFault::kUnreadable;
    Result<std::unique_ptr<model::Classifier>> loaded = model::Classifier::Create(o, &fault);
    if (!loaded) {
      refused_looks.insert(c.look);
      Refuse(RefusalOf(fault), loaded.error().message());
      return false;
    }
    const std::string& version = (*loaded)->model_id();
    if (!c.version.empty() && version != c.version) return false;  // rewritten while loading: look again
    Log(fmt::format("model {} ({}) loaded in {:.0f} ms; it serves from the next batch", version, c.name,
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count()));
    serving = version;
    std::lock_guard lock(mutex);
    next = std::move(*loaded);
    return true;
  }

  void Poll() {
    const std::vector<Candidate> catalogue = Catalogue();
    std::optional<Candidate> target = Decide(catalogue);
    if (!target || target->version == serving || refused_looks.contains(target->look) || !target->settled) return;
    Load(*target);
  }
};

ModelSource::ModelSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ModelSource::~ModelSource() = default;

Result<std::unique_ptr<ModelSource>> ModelSource::Start(ModelSourceOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const std::string& given = impl->options.classifier.model_path;
  const std::string initial = given.empty() ? model::DefaultModelPath() : given;
  std::optional<Look> initial_look = LookAt(initial);
  impl->initial_path = initial_look ? initial_look->path : initial;

  const bool watching = !impl->options.model_dir.empty() || impl->options.chosen_version;
  std::optional<Candidate> target = watching ? impl->Decide(impl->Catalogue(), false) : std::nullopt;
  if (!target || !impl->Load(*target)) {
    // Nothing better can serve: the configured model does, or the service cannot start.
    model::ClassifierOptions o = impl->options.classifier;
    o.model_path = impl->initial_path;
    ASSIGN_OR_RETURN(impl->next, model::Classifier::Create(o));
    impl->serving = impl->next->model_id();
  }
  if (watching) {
    Impl* state = impl.get();
    impl->watcher = std::jthread([state](std::stop_token stop) {
      std::mutex mutex;
      std::condition_variable_any wake;
      while (true) {
        {
          std::unique_lock lock(mutex);
          if (wake.wait_for(lock, stop, state->options.poll, [] { return false; }) || stop.stop_requested()) return;
        }
        state->Poll();
      }
    });
  }
  return std::unique_ptr<ModelSource>(new ModelSource(std::move(impl)));
}

std::unique_ptr<model::Classifier> ModelSource::TakeNext() {
  std::lock_guard lock(impl_->mutex);
  return std::move(impl_->next);
}

RefusalCounts ModelSource::refused() const {
  RefusalCounts counts{};
  for (size_t i = 0; i < kModelRefusals; ++i) counts[i] = impl_->refused[i].load();
  return counts;
}

}  // namespace iotinfer::infer
