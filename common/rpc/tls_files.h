// Reads the PEM files a TlsConfig names, for server and channel credentials. Stateless.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/cluster/cluster_config.h"

namespace afd::rpc {

struct TlsPem {
  std::string cert_chain;  // empty when the file is not configured
  std::string private_key;
  std::string root_certs;
};

// NOT_FOUND naming the file that cannot be read.
absl::StatusOr<TlsPem> ReadTlsFiles(const TlsConfig& tls);

}  // namespace afd::rpc
