// Export of a bf16 MiniMax-M2 checkpoint directory (config.json + safetensors) to a GGUF file
// in llama.cpp's "minimax-m2" layout: the same weights (bf16 matrices, fp32 norms, router and
// routing bias; experts stacked per layer), so llama.cpp runs the very model afd runs. The
// vocabulary is a stand-in (the 256 GPT-2 byte tokens, then placeholders up to vocab_size):
// the benchmark feeds token ids, never text.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace afd::bench {

absl::Status ExportMiniMaxGguf(const std::string& checkpoint_dir, const std::string& out_path);

}  // namespace afd::bench
