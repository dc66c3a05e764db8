// afd-gen-checkpoint: writes a synthetic random-weight MiniMax checkpoint (config.json +
// safetensors in the released layout) for a named preset. See --help.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "common/checkpoint_gen.h"
#include "common/safetensors.h"
#include "common/weights.h"

namespace {

void PrintUsage(std::FILE* out) {
  std::fprintf(out,
               "usage: afd-gen-checkpoint --preset NAME --out DIR [--dtype bf16|fp8] "
               "[--seed N] [--shards N] [--spelling original|transformers]\n"
               "                          [--quant awq|mlx [--bits B] [--group G] "
               "[--quantize-attention 0|1]]\n\n"
               "Writes a random-weight MiniMax checkpoint (config.json + safetensors, released\n"
               "tensor names; fp8: e4m3 weights with [128,128] fp32 weight_scale_inv blocks),\n"
               "deterministic from --seed (default 0), streaming with bounded memory.\n"
               "--shards N > 1 writes model-0000k-of-0000N.safetensors + index.json.\n"
               "--spelling overrides the preset's config.json key spelling.\n"
               "--quant writes the same bf16 weights packed (QUANT.md): awq = AutoAWQ GEMM\n"
               "int4 experts (--bits 4, --group default 128), attention too unless\n"
               "--quantize-attention 0; mlx = mlx affine --bits 2/3/4/5/6/8 (default 4),\n"
               "--group 32/64/128 (default 64), experts stacked as switch_mlp, embeddings,\n"
               "attention (unless --quantize-attention 0) and lm_head packed, router gate\n"
               "8-bit.\n\npresets:\n");
  for (const afd::CheckpointPreset& p : afd::CheckpointPresets()) {
    std::fprintf(out, "  %-12s %s\n", p.name.c_str(), p.description.c_str());
  }
}

int BadArgs(const std::string& message) {
  std::fprintf(stderr, "afd-gen-checkpoint: %s\n\n", message.c_str());
  PrintUsage(stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset_name, out_dir, dtype = "bf16", spelling, quant;
  uint64_t seed = 0;
  int shards = 1;
  int bits = 4, group = -1, quantize_attention = 1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintUsage(stdout);
      return 0;
    }
    std::string value;
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg.rfind("--", 0) == 0) {
      if (i + 1 >= argc) return BadArgs(arg + " needs a value");
      value = argv[++i];
    } else {
      return BadArgs("unexpected argument '" + arg + "'");
    }
    if (arg == "--preset") {
      preset_name = value;
    } else if (arg == "--out") {
      out_dir = value;
    } else if (arg == "--dtype") {
      dtype = value;
    } else if (arg == "--spelling") {
      spelling = value;
    } else if (arg == "--seed") {
      if (!absl::SimpleAtoi(value, &seed)) return BadArgs("--seed needs a non-negative integer");
    } else if (arg == "--quant") {
      quant = value;
    } else if (arg == "--bits") {
      if (!absl::SimpleAtoi(value, &bits)) return BadArgs("--bits needs an integer");
    } else if (arg == "--group") {
      if (!absl::SimpleAtoi(value, &group) || group <= 0) {
        return BadArgs("--group needs a positive integer");
      }
    } else if (arg == "--quantize-attention") {
      if (value != "0" && value != "1") return BadArgs("--quantize-attention must be 0 or 1");
      quantize_attention = value == "1";
    } else if (arg == "--shards") {
      if (!absl::SimpleAtoi(value, &shards) || shards < 1) {
        return BadArgs("--shards needs a positive integer");
      }
    } else {
      return BadArgs("unknown flag '" + arg + "'");
    }
  }
  if (preset_name.empty()) return BadArgs("--preset is required");
  if (out_dir.empty()) return BadArgs("--out is required");
  absl::StatusOr<afd::CheckpointPreset> preset = afd::FindCheckpointPreset(preset_name);
  if (!preset.ok()) return BadArgs(std::string(preset.status().message()));

  afd::GenCheckpointOptions options;
  options.seed = seed;
  options.num_shards = shards;
  options.spelling = preset->spelling;
  if (dtype == "bf16") {
    options.dtype = afd::GenWeightDType::kBF16;
  } else if (dtype == "fp8") {
    options.dtype = afd::GenWeightDType::kFp8;
  } else {
    return BadArgs("--dtype must be bf16 or fp8");
  }
  if (quant == "awq" || quant == "mlx") {
    options.quant = quant == "awq" ? afd::GenQuant::kAwq : afd::GenQuant::kMlx;
    options.quant_bits = bits;
    options.quant_group = group > 0 ? group : quant == "awq" ? 128 : 64;
    options.quantize_attention = quantize_attention != 0;
    if (dtype != "bf16") return BadArgs("--quant packs the bf16 weights; drop --dtype fp8");
  } else if (!quant.empty()) {
    return BadArgs("--quant must be awq or mlx");
  }
  if (spelling == "original") {
    options.spelling = afd::ConfigSpelling::kOriginal;
  } else if (spelling == "transformers") {
    options.spelling = afd::ConfigSpelling::kTransformers;
  } else if (!spelling.empty()) {
    return BadArgs("--spelling must be original or transformers");
  }

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<afd::GenCheckpointStats> stats =
      afd::GenerateCheckpoint(preset->config, out_dir, options);
  if (!stats.ok()) {
    std::fprintf(stderr, "afd-gen-checkpoint: %s\n", stats.status().ToString().c_str());
    return 1;
  }
  const double write_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Read it back the way the servers will, so a bad file never leaves this command.
  absl::StatusOr<afd::ModelConfig> config = afd::LoadModelConfig(out_dir);
  absl::StatusOr<std::unique_ptr<afd::Checkpoint>> ckpt =
      config.ok() ? afd::Checkpoint::Open(out_dir)
                  : absl::StatusOr<std::unique_ptr<afd::Checkpoint>>(config.status());
  absl::Status valid = ckpt.ok() ? afd::ValidateCheckpoint(*config, **ckpt) : ckpt.status();
  if (!valid.ok()) {
    std::fprintf(stderr, "afd-gen-checkpoint: wrote %s but it does not validate: %s\n",
                 out_dir.c_str(), valid.ToString().c_str());
    return 1;
  }
  std::printf(
      "wrote %s: preset %s, %s, seed %llu, %lld tensors, %.3f GB in %d file(s), "
      "%.1f s (%.0f MB/s)\n",
      out_dir.c_str(), preset->name.c_str(),
      quant.empty() ? dtype.c_str()
                    : (quant + " " + std::to_string(options.quant_bits) + "-bit g" +
                       std::to_string(options.quant_group))
                          .c_str(),
      static_cast<unsigned long long>(seed),
      static_cast<long long>(stats->tensors), stats->file_bytes / 1e9, stats->shards, write_s,
      stats->file_bytes / 1e6 / (write_s > 0 ? write_s : 1e-9));
  return 0;
}
