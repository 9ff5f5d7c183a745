#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "core/error.h"

namespace iotinfer::spark {

/// Why a TLS handshake with host:port fails, found by making one: gRPC says only that no
/// connection came up, which reads the same as a server that is down. PermissionDenied when
/// the server's certificate does not verify against `roots_pem` (the system's roots when
/// empty) or does not name `host`; InvalidInput for another handshake failure (a server that
/// does not speak TLS, say). nullopt when the handshake succeeds or no TCP connection is made
/// within `timeout`: then TLS is not what is wrong.
std::optional<Error> TlsHandshakeError(const std::string& host, int port, const std::string& roots_pem,
                                       std::chrono::milliseconds timeout);

}  // namespace iotinfer::spark
