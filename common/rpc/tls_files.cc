// PEM file reading (see tls_files.h).
#include "common/rpc/tls_files.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace afd::rpc {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("tls.", what, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsConfig& tls) {
  TlsPem pem;
  ASSIGN_OR_RETURN(pem.cert_chain, ReadFile(tls.cert_file, "cert_file"));
  ASSIGN_OR_RETURN(pem.private_key, ReadFile(tls.key_file, "key_file"));
  ASSIGN_OR_RETURN(pem.root_certs, ReadFile(tls.ca_file, "ca_file"));
  return pem;
}

}  // namespace afd::rpc
