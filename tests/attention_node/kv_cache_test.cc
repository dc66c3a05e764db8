// Tests of KvCache: block accounting, sequence slots, addressing, lightning states.
#include "attention_node/kv_cache.h"

#include <cstring>
#include <set>
#include <vector>

#include "common/kernels/matmul.h"
#include "gtest/gtest.h"

namespace afd::attention {
namespace {

ModelConfig M2Config() {
  ModelConfig c;
  c.arch = Architecture::kMiniMaxM2;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.layer_types.assign(2, LayerType::kFullAttention);
  return c;
}

ModelConfig Text01Config() {
  ModelConfig c = M2Config();
  c.arch = Architecture::kMiniMaxText01;
  c.num_hidden_layers = 3;
  c.layer_types = {LayerType::kLinearAttention, LayerType::kFullAttention,
                   LayerType::kLinearAttention};
  return c;
}

KvCacheOptions Options(int64_t blocks, int block_size, int seqs) {
  KvCacheOptions o;
  o.num_blocks = blocks;
  o.block_size = block_size;
  o.max_sequences = seqs;
  return o;
}

TEST(KvCacheTest, RejectsNonPositiveSizes) {
  EXPECT_EQ(KvCache::Create(M2Config(), Options(0, 16, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCache::Create(M2Config(), Options(4, 0, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvCache::Create(M2Config(), Options(4, 16, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvCacheTest, ReserveTakesWholeBlocksAndFreeReturnsThem) {
  auto cache = KvCache::Create(M2Config(), Options(8, 4, 2)).value();
  const int s = cache->AddSequence().value();
  EXPECT_EQ(cache->BlocksNeeded(s, 9), 3);
  ASSERT_TRUE(cache->Reserve(s, 9).ok());
  EXPECT_EQ(cache->free_blocks(), 5);
  ASSERT_TRUE(cache->Reserve(s, 12).ok());  // still 3 blocks
  EXPECT_EQ(cache->free_blocks(), 5);
  EXPECT_EQ(cache->BlocksNeeded(s, 13), 1);
  ASSERT_TRUE(cache->FreeSequence(s).ok());
  EXPECT_EQ(cache->free_blocks(), 8);
  EXPECT_EQ(cache->live_sequences(), 0);
}

TEST(KvCacheTest, ReserveFailsWithoutAllocatingWhenThePoolIsShort) {
  auto cache = KvCache::Create(M2Config(), Options(3, 4, 2)).value();
  const int a = cache->AddSequence().value();
  const int b = cache->AddSequence().value();
  ASSERT_TRUE(cache->Reserve(a, 8).ok());
  const absl::Status s = cache->Reserve(b, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache->free_blocks(), 1);
  EXPECT_EQ(cache->BlocksNeeded(b, 8), 2);
}

TEST(KvCacheTest, SequenceSlotsAreLimitedAndReused) {
  auto cache = KvCache::Create(M2Config(), Options(4, 4, 2)).value();
  const int a = cache->AddSequence().value();
  const int b = cache->AddSequence().value();
  EXPECT_NE(a, b);
  EXPECT_EQ(cache->AddSequence().status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(cache->FreeSequence(a).ok());
  EXPECT_FALSE(cache->IsLive(a));
  EXPECT_EQ(cache->FreeSequence(a).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache->FreeSequence(99).code(), absl::StatusCode::kNotFound);
  const int c = cache->AddSequence().value();
  EXPECT_EQ(c, a);
  EXPECT_EQ(cache->Length(c), 0);
}

TEST(KvCacheTest, KeyAddressesMatchThePagedViewAndNeverOverlap) {
  const ModelConfig config = M2Config();
  auto cache = KvCache::Create(config, Options(6, 4, 2)).value();
  const int a = cache->AddSequence().value();
  const int b = cache->AddSequence().value();
  ASSERT_TRUE(cache->Reserve(a, 10).ok());
  ASSERT_TRUE(cache->Reserve(b, 7).ok());
  std::set<const float*> seen;
  for (int layer = 0; layer < 2; ++layer) {
    for (int seq : {a, b}) {
      const kernels::PagedKvView view = cache->View(layer, seq);
      const int64_t len = seq == a ? 10 : 7;
      for (int64_t pos = 0; pos < len; ++pos) {
        for (int h = 0; h < config.num_key_value_heads; ++h) {
          float* k = cache->Key(layer, seq, pos, h);
          float* v = cache->Value(layer, seq, pos, h);
          const int64_t off =
              kernels::PagedKvOffset(view.block_table[pos / 4], h, pos % 4,
                                     config.num_key_value_heads, 4, config.head_dim);
          EXPECT_EQ(k, view.k_pool + off);
          EXPECT_EQ(v, view.v_pool + off);
          EXPECT_TRUE(seen.insert(k).second);
          EXPECT_TRUE(seen.insert(v).second);
        }
      }
    }
  }
}

TEST(KvCacheTest, StoreWritesFp32ExactlyAndBf16RoundedToNearestEven) {
  const ModelConfig config = M2Config();
  const int d = config.head_dim;
  // 1 + 2^-8 is halfway between two bf16 values and rounds down to even (1.0); 1 + 3 * 2^-8
  // rounds up; the rest are ordinary values.
  std::vector<float> key = {
      1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -2.5f, 0.1f, 3e-3f, -7.0f, 1e5f, 0.0f};
  std::vector<float> value(d);
  for (int c = 0; c < d; ++c) value[c] = 0.3f * static_cast<float>(c) - 1.1f;
  for (KvDtype dtype : {KvDtype::kFloat32, KvDtype::kBFloat16}) {
    SCOPED_TRACE(KvDtypeName(dtype));
    KvCacheOptions options = Options(4, 4, 1);
    options.dtype = dtype;
    auto cache = KvCache::Create(config, options).value();
    const int s = cache->AddSequence().value();
    ASSERT_TRUE(cache->Reserve(s, 6).ok());
    cache->Store(1, s, 5, 1, key.data(), value.data());
    const kernels::PagedKvView view = cache->View(1, s);
    const int64_t off =
        kernels::PagedKvOffset(view.block_table[1], 1, 1, config.num_key_value_heads, 4, d);
    for (int c = 0; c < d; ++c) {
      if (dtype == KvDtype::kFloat32) {
        EXPECT_EQ(view.k_pool[off + c], key[c]);
        EXPECT_EQ(view.v_pool[off + c], value[c]);
        EXPECT_EQ(view.k_pool_bf16, nullptr);
      } else {
        EXPECT_EQ(view.k_pool_bf16[off + c], kernels::FloatToBf16(key[c]));
        EXPECT_EQ(view.v_pool_bf16[off + c], kernels::FloatToBf16(value[c]));
        EXPECT_EQ(view.k_pool, nullptr);
        EXPECT_EQ(cache->Key(1, s, 5, 1), nullptr);
      }
    }
    if (dtype == KvDtype::kBFloat16) {
      EXPECT_EQ(kernels::Bf16ToFloat(view.k_pool_bf16[off + 0]), 1.0f);
      EXPECT_EQ(kernels::Bf16ToFloat(view.k_pool_bf16[off + 1]), 1.0f + 4 * 0x1p-8f);
    }
  }
}

TEST(KvCacheTest, ParsesTheDtypeNames) {
  EXPECT_EQ(ParseKvDtype("float32").value(), KvDtype::kFloat32);
  EXPECT_EQ(ParseKvDtype("fp32").value(), KvDtype::kFloat32);
  EXPECT_EQ(ParseKvDtype("bfloat16").value(), KvDtype::kBFloat16);
  EXPECT_EQ(ParseKvDtype("bf16").value(), KvDtype::kBFloat16);
  const absl::Status bad = ParseKvDtype("fp16").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("bfloat16"), std::string::npos);
}

TEST(KvCacheTest, LightningStatesStartZeroPerSequenceAndLayer) {
  const ModelConfig config = Text01Config();
  auto cache = KvCache::Create(config, Options(4, 4, 2)).value();
  const int s = cache->AddSequence().value();
  const int64_t floats = int64_t{config.num_attention_heads} * config.head_dim * config.head_dim;
  EXPECT_FALSE(cache->HasLinearState(0, s));
  float* s0 = cache->LinearState(0, s);
  float* s2 = cache->LinearState(2, s);
  EXPECT_NE(s0, s2);
  for (int64_t i = 0; i < floats; ++i) ASSERT_EQ(s0[i], 0.0f);
  s0[5] = 3.0f;
  cache->MarkLinearState(0, s);
  EXPECT_TRUE(cache->HasLinearState(0, s));
  EXPECT_FALSE(cache->HasLinearState(2, s));
  // A reused slot starts from a zero state without the flag.
  ASSERT_TRUE(cache->FreeSequence(s).ok());
  const int t = cache->AddSequence().value();
  EXPECT_FALSE(cache->HasLinearState(0, t));
  EXPECT_EQ(cache->LinearState(0, t)[5], 0.0f);
}

TEST(KvCacheTest, ModelWithoutFullAttentionNeedsNoBlocks) {
  ModelConfig config = Text01Config();
  config.layer_types.assign(3, LayerType::kLinearAttention);
  auto cache = KvCache::Create(config, Options(1, 4, 1)).value();
  const int s = cache->AddSequence().value();
  EXPECT_EQ(cache->BlocksNeeded(s, 1000), 0);
  EXPECT_TRUE(cache->Reserve(s, 1000).ok());
}

}  // namespace
}  // namespace afd::attention
