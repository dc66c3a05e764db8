#include "gateway/tokenizer/utf8.h"

#include <cstring>

namespace afd::gateway {

size_t ValidUtf8PrefixLength(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Skip ASCII eight bytes at a time.
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s + i, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char b = s[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    int len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return n;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {
constexpr char kReplacement[] = "\xEF\xBF\xBD";
}  // namespace

void Utf8LossyStream::Feed(std::string_view bytes, std::string* out) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    if (needed_ == 0) {
      // Copy the longest valid run in one go.
      const size_t run = ValidUtf8PrefixLength(bytes.substr(i));
      out->append(bytes.data() + i, run);
      i += run;
      if (i == n) break;
      const unsigned char b = s[i];
      if (b >= 0xC2 && b <= 0xDF) {
        needed_ = 1;
      } else if (b >= 0xE0 && b <= 0xEF) {
        needed_ = 2;
        if (b == 0xE0) lower_ = 0xA0;
        if (b == 0xED) upper_ = 0x9F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        needed_ = 3;
        if (b == 0xF0) lower_ = 0x90;
        if (b == 0xF4) upper_ = 0x8F;
      } else {
        out->append(kReplacement);
        ++i;
        continue;
      }
      pending_[0] = b;
      pending_len_ = 1;
      ++i;
      continue;
    }
    const unsigned char b = s[i];
    if (b < lower_ || b > upper_) {
      // The held bytes are a maximal ill-formed subpart; `b` is looked at again.
      out->append(kReplacement);
      needed_ = 0;
      pending_len_ = 0;
      lower_ = 0x80;
      upper_ = 0xBF;
      continue;
    }
    lower_ = 0x80;
    upper_ = 0xBF;
    pending_[pending_len_++] = b;
    --needed_;
    ++i;
    if (needed_ == 0) {
      out->append(reinterpret_cast<const char*>(pending_), pending_len_);
      pending_len_ = 0;
    }
  }
}

void Utf8LossyStream::Flush(std::string* out) {
  if (pending_len_ > 0) out->append(kReplacement);
  pending_len_ = 0;
  needed_ = 0;
  lower_ = 0x80;
  upper_ = 0xBF;
}

void AppendUtf8Lossy(std::string_view bytes, std::string* out) {
  Utf8LossyStream stream;
  stream.Feed(bytes, out);
  stream.Flush(out);
}

}  // namespace afd::gateway
