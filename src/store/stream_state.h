#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/results.h"

namespace iotinfer::store {

// What a live count (`iotinfer stream`) keeps in the store so that it is exact after a crash:
// per Kafka partition, the offset to read next and the counts of every record before it.

/// Producers are spread over this many buckets (producer_id mod kStateBuckets) in a stream's
/// saved state. An int producer_id leaves at most 65,536 producers in a bucket, so no saved
/// document of the state exceeds about 3 MiB however many producers there are (MongoDB's
/// limit is 16 MiB), and a partition with a million producers saves only the buckets that
/// changed.
inline constexpr int32_t kStateBuckets = 65536;
int32_t StateBucket(int producer_id);

/// Which slice of a partition's counts a chunk holds: one bucket's totals (no window) or one
/// bucket's counts in the window starting at `window_start_us`.
struct ChunkKey {
  std::optional<int64_t> window_start_us;
  int32_t bucket = 0;
  friend auto operator<=>(const ChunkKey&, const ChunkKey&) = default;
};

/// One slice of a partition's live count as it stood at offset `as_of`: the counts of the
/// records before it that fall in the slice. `as_of` is the offset just after the last record
/// that changed the slice, so a chunk's content is a function of the topic alone, whichever
/// instance counted it: the chunks of one partition can be separate documents, written one
/// by one, and still agree with the partition's offset.
struct StateChunk {
  ChunkKey key;
  int64_t as_of = 0;
  std::vector<ProducerCounts> counts;  // sorted by producer_id
  friend bool operator==(const StateChunk&, const StateChunk&) = default;
};

/// One Kafka partition's share of a live count (`iotinfer stream`): the offset to read next
/// and, in chunks, the counts of every record before it. The offset is one small document
/// (the head); each chunk its own. A save writes the changed chunks first, then the head in
/// one single-document write, so whatever crashes when, the head's offset and the chunks it
/// selects (per key, the one with the greatest `as_of` not after it) never disagree.
struct StreamState {
  std::string group;  // the stream job, by its consumer group
  std::string topic;
  int32_t partition = 0;
  int64_t next_offset = 0;
  // Windows starting before this are no longer kept: their chunks are ignored and dropped.
  std::optional<int64_t> window_floor_us;
  // Saving: the chunks that changed since the last save. Loading: the chunk of each key
  // selected by next_offset (or, with `since`, those that changed since), sorted by key.
  std::vector<StateChunk> chunks;
  // Saving only: chunks this save makes obsolete (an earlier version of a saved chunk, a
  // window under the floor), deleted once the head is saved.
  std::vector<StateChunk> obsolete;
  int64_t updated_at_us = 0;  // kept in milliseconds, as every timestamp
  friend bool operator==(const StreamState&, const StreamState&) = default;
};

/// A partition's offset as a reader last loaded it: (topic, partition) -> next_offset.
using StateVersions = std::map<std::pair<std::string, int32_t>, int64_t>;

}  // namespace iotinfer::store
