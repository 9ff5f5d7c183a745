#include "store/store.h"

#include <fmt/format.h>

#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "core/text.h"
#include "store/store_internal.h"

namespace iotinfer::store {

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  const std::string_view uri = options.uri;
  if (uri.starts_with("sqlite:")) {
    std::string path(uri.substr(7));
    if (path.empty()) return std::unexpected(Error::InvalidInput("store URI 'sqlite:' names no file"));
    return OpenSqlite(options, path);
  }
  if (uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) return OpenMongo(options);
  return std::unexpected(Error::InvalidInput(
      fmt::format("store URI '{}' is neither sqlite:PATH nor mongodb://...", RedactUri(options.uri))));
}

int32_t StateBucket(int producer_id) {
  // Non-negative for negative ids too.
  return static_cast<int32_t>(static_cast<uint32_t>(producer_id) % static_cast<uint32_t>(kStateBuckets));
}

std::vector<StateChunk> SelectChunks(const StreamState& head, std::vector<StateChunk> found,
                                     std::vector<StateChunk>* unselectable) {
  std::map<ChunkKey, StateChunk> selected;
  auto set_aside = [&](StateChunk chunk) {
    if (unselectable) unselectable->push_back(std::move(chunk));
  };
  for (StateChunk& chunk : found) {
    if (chunk.as_of > head.next_offset) continue;
    if (chunk.key.window_start_us && head.window_floor_us && *chunk.key.window_start_us < *head.window_floor_us) {
      set_aside(std::move(chunk));
      continue;
    }
    auto [it, inserted] = selected.try_emplace(chunk.key);
    if (inserted) {
      it->second = std::move(chunk);
    } else if (chunk.as_of > it->second.as_of) {
      set_aside(std::exchange(it->second, std::move(chunk)));
    } else if (chunk.as_of < it->second.as_of) {
      set_aside(std::move(chunk));
    }
  }
  std::vector<StateChunk> chunks;
  chunks.reserve(selected.size());
  for (auto& [key, chunk] : selected) chunks.push_back(std::move(chunk));
  return chunks;
}

namespace {

// `stored` as read back: its times in whole milliseconds, as every store keeps them.
bool SameDeviceFields(const InferenceRecord& record, const InferenceRecord& stored) {
  auto millis = [](const std::optional<int64_t>& us) { return us ? std::optional(ToMillis(*us)) : std::nullopt; };
  return record.producer_id == stored.producer_id && record.actual_value == stored.actual_value &&
         millis(record.produced_at_us) == millis(stored.produced_at_us);
}

Insertion Classify(const InferenceRecord& record, const std::string& source, const StoredRecord& stored) {
  if (stored.source == source) return {.kind = Insertion::Kind::kReplayed};
  return {.kind = SameDeviceFields(record, stored.record) ? Insertion::Kind::kDuplicate : Insertion::Kind::kConflict,
          .stored_source = stored.source};
}

}  // namespace

Result<std::vector<Insertion>> Store::InsertFirst(std::span<const InferenceRecord> records,
                                                  std::span<const std::string> sources) {
  if (records.size() != sources.size()) {
    return std::unexpected(Error::Internal("InsertFirst: one source per record is needed"));
  }
  // The first of each id in the batch goes to the store; the others are judged against it.
  std::unordered_map<std::string_view, size_t> first;  // id -> index into `unique`
  std::vector<InferenceRecord> unique;
  std::vector<std::string> unique_sources;
  std::vector<std::optional<size_t>> first_of(records.size());  // set for records that are not the first
  for (size_t i = 0; i < records.size(); ++i) {
    auto [it, inserted] = first.try_emplace(records[i].id, unique.size());
    if (!inserted) {
      first_of[i] = it->second;
      continue;
    }
    unique.push_back(records[i]);
    unique_sources.push_back(sources[i]);
  }
  ASSIGN_OR_RETURN(std::vector<std::optional<StoredRecord>> stored, InsertNew(unique, unique_sources));
  std::vector<Insertion> insertions;
  insertions.reserve(records.size());
  for (size_t i = 0, next = 0; i < records.size(); ++i) {
    if (first_of[i]) {
      const size_t j = *first_of[i];
      // The stored document of that id: the batch's first, or what was there before it.
      const StoredRecord earlier =
          stored[j] ? *stored[j] : StoredRecord{.record = unique[j], .source = unique_sources[j]};
      insertions.push_back(Classify(records[i], sources[i], earlier));
    } else {
      const size_t j = next++;
      insertions.push_back(stored[j] ? Classify(records[i], sources[i], *stored[j]) : Insertion{});
    }
  }
  return insertions;
}

Status Store::ReplaceResults(std::span<const ProducerResult> results) {
  TRY(UpsertResults(results));
  ASSIGN_OR_RETURN(const std::vector<ProducerResult> stored, ReadResults());
  std::set<int> kept;
  for (const ProducerResult& r : results) kept.insert(r.producer_id);
  std::vector<int> stale;
  for (const ProducerResult& r : stored) {
    if (!kept.contains(r.producer_id)) stale.push_back(r.producer_id);
  }
  return stale.empty() ? Ok() : DeleteResults(stale);
}

Result<bool> Store::SaveStreamState(const StreamState& state) {
  ASSIGN_OR_RETURN(std::vector<bool> saved, SaveStreamStates({&state, 1}));
  return saved.at(0);
}

namespace {

// The user information of a `scheme://user[:password]@host...` URI: from `first` to the '@' at
// `at` (which may be empty); nullopt when the URI has none.
struct UserInfo {
  size_t first;
  size_t at;
};
std::optional<UserInfo> FindUserInfo(std::string_view uri) {
  const size_t scheme = uri.find("://");
  if (scheme == std::string_view::npos) return std::nullopt;
  const size_t authority = scheme + 3;
  const size_t end = uri.find_first_of("/?", authority);
  const size_t at = uri.rfind('@', end == std::string_view::npos ? uri.size() : end);
  if (at == std::string_view::npos || at < authority) return std::nullopt;
  return UserInfo{.first = authority, .at = at};
}

}  // namespace

Result<std::string> WithPassword(std::string_view uri, const StoreOptions& options) {
  std::string password = options.password;
  if (!options.password_file.empty()) {
    ASSIGN_OR_RETURN(password, ReadSecretFile(options.password_file, "store password"));
  }
  if (password.empty()) return std::string(uri);
  const std::optional<UserInfo> user = FindUserInfo(uri);
  if (!user || user->at == user->first) {
    return std::unexpected(Error::InvalidInput(fmt::format(
        "a store password is set, but the store URI '{}' names no user (mongodb://USER@HOST/...)", RedactUri(uri))));
  }
  const size_t at = user->at;
  if (uri.substr(user->first, at - user->first).find(':') != std::string_view::npos) {
    return std::unexpected(Error::InvalidInput(
        fmt::format("a store password is set, and the store URI '{}' carries one too: give only one", RedactUri(uri))));
  }
  // RFC 3986 leaves only the unreserved characters as they are in user information.
  std::string encoded;
  for (const unsigned char c : password) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      encoded += fmt::format("%{:02X}", c);
    }
  }
  return fmt::format("{}:{}{}", uri.substr(0, at), encoded, uri.substr(at));
}

std::string RedactUri(std::string_view uri) {
  const std::optional<UserInfo> user = FindUserInfo(uri);
  if (!user) return std::string(uri);
  const size_t colon = uri.find(':', user->first);
  if (colon == std::string_view::npos || colon > user->at) return std::string(uri);
  return fmt::format("{}***{}", uri.substr(0, colon + 1), uri.substr(user->at));
}

int64_t NowMillisAsMicros() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now).count() * 1000;
}

}  // namespace iotinfer::store
