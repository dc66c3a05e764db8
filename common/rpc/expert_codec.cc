// ExpertBatch / ExpertResult codec (see expert_codec.h).
#include "common/rpc/expert_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/kernels/matmul.h"
#include "common/rpc/status_codec.h"
#include "common/status.h"

namespace afd::rpc {
namespace {

constexpr int64_t kMaxHiddenDim = 1 << 20;

bool FloatAligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % alignof(float) == 0; }

template <typename T>
void CopyInto(const T* src, int64_t n, google::protobuf::RepeatedField<T>* dst) {
  dst->Resize(static_cast<int>(n), T{});
  if (n > 0) std::memcpy(dst->mutable_data(), src, sizeof(T) * n);
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("expert batch: ", field, ": ", why));
}

}  // namespace

void EncodeExpertBatch(const ExpertBatchView& batch, v1::DType dtype, v1::ExpertBatch* proto) {
  const int64_t t_count = batch.num_tokens;
  const int64_t d = batch.hidden_dim;
  const int64_t pairs = batch.num_pairs();
  proto->set_id(batch.id);
  proto->set_layer(static_cast<uint32_t>(batch.layer));
  proto->set_num_tokens(static_cast<uint32_t>(t_count));
  proto->set_hidden_dim(static_cast<uint32_t>(d));
  proto->set_dtype(dtype);
  std::string* hidden = proto->mutable_hidden();
  if (dtype == v1::DTYPE_BF16) {
    hidden->resize(static_cast<size_t>(t_count * d) * sizeof(uint16_t));
    char* out = hidden->data();
    for (int64_t t = 0; t < t_count; ++t) {
      const float* row = batch.row(t);
      for (int64_t c = 0; c < d; ++c) {
        const uint16_t v = kernels::FloatToBf16(row[c]);
        std::memcpy(out + (t * d + c) * sizeof(uint16_t), &v, sizeof(v));
      }
    }
  } else {
    hidden->resize(static_cast<size_t>(t_count * d) * sizeof(float));
    char* out = hidden->data();
    if (batch.token_index == nullptr) {
      if (t_count > 0) std::memcpy(out, batch.hidden, sizeof(float) * t_count * d);
    } else {
      for (int64_t t = 0; t < t_count; ++t) {
        std::memcpy(out + t * d * sizeof(float), batch.row(t), sizeof(float) * d);
      }
    }
  }
  CopyInto(batch.offsets, t_count > 0 ? t_count + 1 : 0, proto->mutable_offsets());
  CopyInto(batch.expert_ids, pairs, proto->mutable_expert_ids());
  CopyInto(batch.weights, pairs, proto->mutable_weights());
  if (batch.fold != nullptr) {
    CopyInto(batch.fold, t_count, proto->mutable_fold());
  } else {
    proto->clear_fold();
  }
  if (batch.tiles != nullptr && std::any_of(batch.tiles, batch.tiles + t_count,
                                            [](uint8_t v) { return v != 0; })) {
    proto->set_tiles(reinterpret_cast<const char*>(batch.tiles), t_count);
  } else {
    proto->clear_tiles();
  }
}

absl::Status DecodeExpertBatch(const v1::ExpertBatch& proto, std::vector<float>* scratch,
                               ExpertBatchView* batch) {
  const int64_t t_count = proto.num_tokens();
  const int64_t d = proto.hidden_dim();
  if (d <= 0 || d > kMaxHiddenDim) {
    return Invalid("hidden_dim", absl::StrCat(d, " is outside [1, ", kMaxHiddenDim, "]"));
  }
  size_t element_bytes = 0;
  switch (proto.dtype()) {
    case v1::DTYPE_F32:
      element_bytes = 4;
      break;
    case v1::DTYPE_BF16:
      element_bytes = 2;
      break;
    default:
      return Invalid(
          "dtype", absl::StrCat(v1::DType_Name(proto.dtype()), " is not supported (F32 or BF16)"));
  }
  const uint64_t expected_bytes = static_cast<uint64_t>(t_count) * d * element_bytes;
  if (proto.hidden().size() != expected_bytes) {
    return Invalid(
        "hidden", absl::StrCat(proto.hidden().size(), " bytes, expected ", t_count, " tokens x ", d,
                               " x ", element_bytes, " = ", expected_bytes));
  }
  const int64_t offsets_size = proto.offsets_size();
  if (t_count > 0 ? offsets_size != t_count + 1 : offsets_size > 1) {
    return Invalid("offsets",
                   absl::StrCat(offsets_size, " entries, expected num_tokens + 1 = ", t_count + 1));
  }
  const int64_t pairs = t_count > 0 ? proto.offsets(static_cast<int>(t_count)) : 0;
  if (proto.expert_ids_size() != pairs || proto.weights_size() != pairs) {
    return Invalid("expert_ids/weights",
                   absl::StrCat(proto.expert_ids_size(), " ids and ", proto.weights_size(),
                                " weights, expected offsets[num_tokens] = ", pairs));
  }
  if (proto.fold_size() != 0 && proto.fold_size() != t_count) {
    return Invalid("fold", absl::StrCat(proto.fold_size(), " entries, expected 0 or ", t_count));
  }
  if (!proto.tiles().empty() && static_cast<int64_t>(proto.tiles().size()) != t_count) {
    return Invalid("tiles", absl::StrCat(proto.tiles().size(), " bytes, expected 0 or ", t_count));
  }

  const char* bytes = proto.hidden().data();
  const float* hidden = reinterpret_cast<const float*>(bytes);
  if (proto.dtype() == v1::DTYPE_BF16) {
    scratch->resize(static_cast<size_t>(t_count * d));
    for (int64_t i = 0; i < t_count * d; ++i) {
      uint16_t v;
      std::memcpy(&v, bytes + i * sizeof(uint16_t), sizeof(v));
      (*scratch)[i] = kernels::Bf16ToFloat(v);
    }
    hidden = scratch->data();
  } else if (!FloatAligned(bytes)) {
    scratch->resize(static_cast<size_t>(t_count * d));
    if (t_count > 0) std::memcpy(scratch->data(), bytes, expected_bytes);
    hidden = scratch->data();
  }

  ExpertBatchView view;
  view.id = proto.id();
  view.layer = static_cast<int>(proto.layer());
  view.num_tokens = t_count;
  view.hidden_dim = static_cast<int>(d);
  view.hidden = hidden;
  view.offsets = proto.offsets().data();
  view.expert_ids = proto.expert_ids().data();
  view.weights = proto.weights().data();
  view.fold = proto.fold_size() > 0 ? proto.fold().data() : nullptr;
  view.tiles = proto.tiles().empty() ? nullptr
                                     : reinterpret_cast<const uint8_t*>(proto.tiles().data());
  RETURN_IF_ERROR(ValidateExpertBatch(view));
  *batch = view;
  return absl::OkStatus();
}

void EncodeExpertResult(uint64_t id, const float* rows, int64_t num_rows, int hidden_dim,
                        uint64_t compute_ns, v1::ExpertResult* proto) {
  proto->set_id(id);
  proto->clear_status();
  proto->set_num_rows(static_cast<uint32_t>(num_rows));
  const size_t bytes = static_cast<size_t>(num_rows) * hidden_dim * sizeof(float);
  std::string* out = proto->mutable_rows();
  out->resize(bytes);
  if (bytes > 0) std::memcpy(out->data(), rows, bytes);
  proto->set_compute_ns(compute_ns);
}

void EncodeExpertResultError(uint64_t id, const absl::Status& status, v1::ExpertResult* proto) {
  proto->set_id(id);
  ToProtoStatus(status.ok() ? absl::InternalError("error result with OK status") : status,
                proto->mutable_status());
  proto->set_num_rows(0);
  proto->mutable_rows()->clear();
  proto->set_compute_ns(0);
}

absl::StatusOr<const float*> DecodeExpertResult(const v1::ExpertResult& proto, uint64_t expected_id,
                                                int64_t expected_rows, int hidden_dim,
                                                std::vector<float>* scratch) {
  if (proto.has_status()) RETURN_IF_ERROR(FromProtoStatus(proto.status()));
  const uint64_t expected_bytes = static_cast<uint64_t>(expected_rows) * hidden_dim * 4;
  if (proto.id() != expected_id || proto.num_rows() != expected_rows ||
      proto.rows().size() != expected_bytes) {
    return absl::InternalError(absl::StrCat("expert result: got id ", proto.id(), " with ",
                                            proto.num_rows(), " rows in ", proto.rows().size(),
                                            " bytes, expected id ", expected_id, " with ",
                                            expected_rows, " rows of ", hidden_dim, " floats"));
  }
  const char* bytes = proto.rows().data();
  if (FloatAligned(bytes)) return reinterpret_cast<const float*>(bytes);
  scratch->resize(static_cast<size_t>(expected_rows) * hidden_dim);
  if (expected_bytes > 0) std::memcpy(scratch->data(), bytes, expected_bytes);
  return static_cast<const float*>(scratch->data());
}

}  // namespace afd::rpc
