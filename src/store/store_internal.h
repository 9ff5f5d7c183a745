#pragma once

// Shared by the store module's sources; not part of its public interface.
#include <memory>
#include <vector>

#include "store/store.h"

namespace iotinfer::store {

Result<std::unique_ptr<Store>> OpenSqlite(const StoreOptions& options, const std::string& path);
Result<std::unique_ptr<Store>> OpenMongo(const StoreOptions& options);

/// `us` in whole milliseconds, rounded down (what a BSON date holds).
inline int64_t ToMillis(int64_t us) { return us / 1000 - (us % 1000 < 0 ? 1 : 0); }

/// Of one partition's chunks, the one of each key that `head` selects (the greatest as_of
/// not after its next_offset), leaving out windows under its floor; sorted by key. Into
/// `unselectable` (when given) go those no head can select again: under the selected one of
/// their key, or windows under the floor. Chunks after the head are neither: an instance may
/// be about to save a head that selects them.
std::vector<StateChunk> SelectChunks(const StreamState& head, std::vector<StateChunk> found,
                                     std::vector<StateChunk>* unselectable);

}  // namespace iotinfer::store
