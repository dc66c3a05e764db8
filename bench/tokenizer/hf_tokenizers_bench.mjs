// Reference throughput: @huggingface/tokenizers (tokenizers.js, the library that produced the
// golden files) encoding the same ~10 MB text as tokenizer_bench.cc (every golden case text of
// the four tokenizers joined with "\n", repeated to at least 10 MiB). Prints MB/s per tokenizer.
//
// Run: ninja -C build hf_tokenizers_js
//      node bench/tokenizer/hf_tokenizers_bench.mjs --modules build/bench/tokenizer/js/node_modules \
//        --tokenizers build/tokenizers --data tests/data [--repeat 3] [--mib X | --copies N]
// (build/bin/tokenizer_bench --reference runs this next to afd and prints both and the ratio.)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
if (!args.modules || !args.tokenizers || !args.data) {
  console.error("usage: node hf_tokenizers_bench.mjs --modules DIR --tokenizers DIR --data DIR [--repeat N] [--mib X | --copies N]");
  process.exit(2);
}
const require = createRequire(path.resolve(args.modules, "..", "package.json"));
const { Tokenizer } = require(path.resolve(args.modules, "@huggingface/tokenizers"));
const names = ["gpt4o", "qwen3", "deepseek_v3", "minimax-m2-synthetic"];
const repeat = Number(args.repeat ?? 3);

const texts = [];
for (const name of names) {
  const golden = JSON.parse(readFileSync(path.join(args.data, "tokenizers", name, "golden.json"), "utf8"));
  for (const c of golden.cases) texts.push(c.text);
}
const unit = texts.join("\n");
// --mib X: enough copies of the unit for X MiB (default 10, tokenizer_bench's Encode text;
// tokenizer_bench --reference passes its --reference_mib). --copies N uses N copies of the unit
// instead (1 = the cold case of tokenizer_bench's EncodeCold).
const target = Number(args.mib ?? 10) * 1024 * 1024;
let text = "";
for (let copies = 0; args.copies ? copies < Number(args.copies) : Buffer.byteLength(text, "utf8") < target; ++copies) {
  text = text.length ? text + "\n" + unit : unit;
}
const bytes = Buffer.byteLength(text, "utf8");

for (const name of names) {
  const dir = path.join(args.tokenizers, name);
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
                                  JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
  let best = Infinity, tokens = 0;
  for (let r = 0; r < repeat; ++r) {
    const t0 = process.hrtime.bigint();
    tokens = tokenizer.encode(text, { add_special_tokens: false }).ids.length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, s);
  }
  console.log(`${name}: ${(bytes / 1e6 / best).toFixed(2)} MB/s (${bytes} bytes, ${tokens} tokens, best of ${repeat})`);
}
