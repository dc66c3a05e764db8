// MoE routing from fp32 router logits (MODEL.md 1.4 / 3.5). Stateless.
#pragma once

#include <cstdint>

namespace afd::kernels {

// MiniMax-M2: s = sigmoid(logits); choose top-k of s + bias (bias may be null = zeros);
// weights = s[chosen] / sum(s[chosen]). Outputs are written sorted by ascending expert id.
// logits: [n, num_experts]; expert_ids, weights: [n, k].
void SigmoidBiasTopK(const float* logits, const float* bias, int64_t n, int num_experts, int k,
                     int32_t* expert_ids, float* weights);
void SigmoidBiasTopKReference(const float* logits, const float* bias, int64_t n, int num_experts,
                              int k, int32_t* expert_ids, float* weights);

// Text-01 (Mixtral): p = softmax(logits); top-k of p; weights = p[chosen] / sum(p[chosen]).
// Outputs sorted by ascending expert id.
void SoftmaxTopK(const float* logits, int64_t n, int num_experts, int k, int32_t* expert_ids,
                 float* weights);
void SoftmaxTopKReference(const float* logits, int64_t n, int num_experts, int k,
                          int32_t* expert_ids, float* weights);

}  // namespace afd::kernels
