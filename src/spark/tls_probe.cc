#include "spark/tls_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <memory>

namespace iotinfer::spark {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// A connected, blocking socket whose reads and writes give up after `timeout`; -1 when no
// address of host:port accepts a connection within `timeout`.
int Connect(const std::string& host, int port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, &freeaddrinfo);
  const timeval io{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
                   .tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  for (const addrinfo* a = found; a; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    bool connected = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    if (!connected && errno == EINPROGRESS) {
      pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
      int error = 0;
      socklen_t length = sizeof error;
      connected = poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
                  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    if (connected) {
      const int flags = fcntl(fd, F_GETFL);
      if (fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 &&
          setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &io, sizeof io) == 0 &&
          setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io, sizeof io) == 0) {
        return fd;
      }
    }
    close(fd);
  }
  return -1;
}

std::string OpenSslErrors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    std::array<char, 256> line{};
    ERR_error_string_n(code, line.data(), line.size());
    text += (text.empty() ? "" : "; ") + std::string(line.data());
  }
  return text.empty() ? "the server closed the connection" : text;
}

}  // namespace

std::optional<Error> TlsHandshakeError(const std::string& host, int port, const std::string& roots_pem,
                                       std::chrono::milliseconds timeout) {
  Fd socket{Connect(host, port, timeout)};
  if (socket.fd < 0) return std::nullopt;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  if (!context) return std::nullopt;
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  if (roots_pem.empty()) {
    SSL_CTX_set_default_verify_paths(context.get());
  } else {
    std::unique_ptr<BIO, decltype(&BIO_free)> pem(BIO_new_mem_buf(roots_pem.data(), static_cast<int>(roots_pem.size())),
                                                  &BIO_free);
    X509_STORE* store = SSL_CTX_get_cert_store(context.get());
    while (X509* certificate = PEM_read_bio_X509(pem.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, certificate);
      X509_free(certificate);
    }
    ERR_clear_error();  // the end of the PEM text reads as an error
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context.get()), &SSL_free);
  if (!ssl) return std::nullopt;
  SSL_set_fd(ssl.get(), socket.fd);
  // The name the certificate must carry, as gRPC checks it: an IP address or a host name.
  X509_VERIFY_PARAM* checks = SSL_get0_param(ssl.get());
  in6_addr ip{};
  if (inet_pton(AF_INET, host.c_str(), &ip) == 1 || inet_pton(AF_INET6, host.c_str(), &ip) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(checks, host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl.get(), host.c_str());
    X509_VERIFY_PARAM_set1_host(checks, host.c_str(), 0);
  }
  if (SSL_connect(ssl.get()) == 1) return std::nullopt;
  const long verified = SSL_get_verify_result(ssl.get());
  if (verified != X509_V_OK) {
    return Error::PermissionDenied(
        fmt::format("TLS with {}:{}: certificate verify failed: {} (is --spark-ca the CA that signed the server's "
                    "certificate, and does it name {}?)",
                    host, port, X509_verify_cert_error_string(verified), host));
  }
  return Error::InvalidInput(
      fmt::format("TLS with {}:{} failed: {} (does the server speak TLS? a token and "
                  "--spark-ca imply it)",
                  host, port, OpenSslErrors()));
}

}  // namespace iotinfer::spark
