// KvDtype: the element type of the attention node's paged keys and values, and its names as
// cluster.yaml (limits.kv_cache_dtype) and the command lines spell them. Header-only, so the
// config parser and the KV cache share one list of names.
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace afd {

enum class KvDtype { kFloat32, kBFloat16 };

// "float32" / "fp32" or "bfloat16" / "bf16"; INVALID_ARGUMENT naming the choices otherwise.
inline absl::StatusOr<KvDtype> ParseKvDtype(absl::string_view name) {
  if (name == "float32" || name == "fp32") return KvDtype::kFloat32;
  if (name == "bfloat16" || name == "bf16") return KvDtype::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("kv cache dtype '", name, "': expected float32 (fp32) or bfloat16 (bf16)"));
}

// "float32" / "bfloat16".
inline const char* KvDtypeName(KvDtype dtype) {
  return dtype == KvDtype::kBFloat16 ? "bfloat16" : "float32";
}

inline int KvDtypeBytes(KvDtype dtype) { return dtype == KvDtype::kBFloat16 ? 2 : 4; }

}  // namespace afd
