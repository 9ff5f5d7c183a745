#pragma once

// Shared by the store module's sources; not part of its public interface.
#include <memory>

#include "store/store.h"

namespace iotinfer::store {

Result<std::unique_ptr<Store>> OpenSqlite(const StoreOptions& options, const std::string& path);
Result<std::unique_ptr<Store>> OpenMongo(const StoreOptions& options);

/// `us` in whole milliseconds, rounded down (what a BSON date holds).
inline int64_t ToMillis(int64_t us) { return us / 1000 - (us % 1000 < 0 ? 1 : 0); }

}  // namespace iotinfer::store
