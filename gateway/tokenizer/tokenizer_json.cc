#include "gateway/tokenizer/tokenizer_json.h"

#include "absl/strings/str_cat.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::json;

// SAX handler: a DOM builder that diverts model.vocab and model.merges into TokenizerJson.
class Reader : public nlohmann::json_sax<Json> {
 public:
  explicit Reader(TokenizerJson* out) : out_(out) {}

  const std::string& error() const { return error_; }

  bool null() override { return Value(Json(nullptr)); }
  bool boolean(bool v) override { return Value(Json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::kVocab) {
      out_->vocab.emplace_back(std::move(key_), v);
      return true;
    }
    return Value(Json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::kVocab) {
      if (v > static_cast<number_unsigned_t>(INT64_MAX)) return Fail("vocab id out of range");
      out_->vocab.emplace_back(std::move(key_), static_cast<int64_t>(v));
      return true;
    }
    return Value(Json(v));
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ == Mode::kVocab) return Fail("vocab id is not an integer");
    return Value(Json(v));
  }
  bool string(string_t& v) override {
    if (mode_ == Mode::kMerges) {
      const size_t space = v.find(' ');
      if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos) {
        return Fail(absl::StrCat("bad merge \"", v, "\""));
      }
      out_->merges.emplace_back(v.substr(0, space), v.substr(space + 1));
      return true;
    }
    if (mode_ == Mode::kMergePair) {
      if (pair_size_ >= 2) return Fail("merge pair with more than two tokens");
      pair_[pair_size_++] = std::move(v);
      return true;
    }
    if (mode_ == Mode::kVocab) return Fail("vocab id is not an integer");
    return Value(Json(std::move(v)));
  }
  bool binary(binary_t&) override { return Fail("unexpected binary value"); }

  bool start_object(std::size_t) override {
    if (mode_ != Mode::kNone) return Fail("unexpected object in model.vocab/merges");
    if (InModelField("vocab")) {
      mode_ = Mode::kVocab;
      return true;
    }
    return Open(Json::object());
  }
  bool key(string_t& k) override {
    if (mode_ == Mode::kVocab) {
      key_ = std::move(k);
      return true;
    }
    if (stack_.size() == 1) root_key_ = k;
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kNone;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_size_ = 0;
      return true;
    }
    if (mode_ != Mode::kNone) return Fail("unexpected array in model.vocab/merges");
    if (InModelField("merges")) {
      mode_ = Mode::kMerges;
      return true;
    }
    return Open(Json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::kMergePair) {
      if (pair_size_ != 2) return Fail("merge pair without two tokens");
      out_->merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::kMerges;
      return true;
    }
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kNone;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& e) override {
    return Fail(absl::StrCat("invalid JSON at byte ", position, ": ", e.what()));
  }

 private:
  enum class Mode { kNone, kVocab, kMerges, kMergePair };

  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  // True when the value about to start is root.model.<field>.
  bool InModelField(const char* field) const {
    return stack_.size() == 2 && root_key_ == "model" && key_ == field;
  }
  Json* Place(Json v) {
    if (stack_.empty()) {
      out_->root = std::move(v);
      return &out_->root;
    }
    Json* parent = stack_.back();
    if (parent->is_object()) {
      Json& slot = (*parent)[key_];
      slot = std::move(v);
      return &slot;
    }
    parent->push_back(std::move(v));
    return &parent->back();
  }
  bool Value(Json v) {
    Place(std::move(v));
    return true;
  }
  bool Open(Json container) {
    stack_.push_back(Place(std::move(container)));
    return true;
  }

  TokenizerJson* out_;
  std::vector<Json*> stack_;
  std::string key_;
  std::string root_key_;
  Mode mode_ = Mode::kNone;
  std::string pair_[2];
  int pair_size_ = 0;
  std::string error_;
};

}  // namespace

absl::StatusOr<TokenizerJson> ParseTokenizerJson(std::string_view text) {
  TokenizerJson out;
  Reader reader(&out);
  const bool ok = Json::sax_parse(text.begin(), text.end(), &reader);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: ", reader.error().empty() ? "invalid JSON" : reader.error()));
  }
  return out;
}

}  // namespace afd::gateway
