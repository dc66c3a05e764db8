// Python json.dumps(ensure_ascii=False) compatibility of PyJsonDumps / PyFloatRepr, and
// ParseJsonExact's number handling. Expected strings are what CPython 3 prints.
#include "gateway/chat/py_json.h"

#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

// Parses `text` exactly and dumps it back.
std::string RoundTrip(const std::string& text) {
  absl::StatusOr<Json> v = ParseJsonExact(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status();
  return v.ok() ? PyJsonDumps(*v) : "";
}

TEST(PyFloatReprTest, MatchesPythonReprForEveryDocumentedSpelling) {
  EXPECT_EQ(PyFloatRepr(3.0), "3.0");
  EXPECT_EQ(PyFloatRepr(0.1), "0.1");
  EXPECT_EQ(PyFloatRepr(1e20), "1e+20");
  EXPECT_EQ(PyFloatRepr(1e-7), "1e-07");
  EXPECT_EQ(PyFloatRepr(-0.0), "-0.0");
  EXPECT_EQ(PyFloatRepr(0.0), "0.0");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(PyFloatRepr(-1.5e-5), "-1.5e-05");
  EXPECT_EQ(PyFloatRepr(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(PyFloatRepr(1.7976931348623157e308), "1.7976931348623157e+308");
}

TEST(PyFloatReprTest, SwitchesToExponentAtPythonThresholds) {
  EXPECT_EQ(PyFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PyFloatRepr(0.00001), "1e-05");
  EXPECT_EQ(PyFloatRepr(0.00012345), "0.00012345");
  EXPECT_EQ(PyFloatRepr(9999999999999998.0), "9999999999999998.0");
  EXPECT_EQ(PyFloatRepr(1.5e16), "1.5e+16");
  EXPECT_EQ(PyFloatRepr(123.456), "123.456");
  EXPECT_EQ(PyFloatRepr(100.0), "100.0");
  EXPECT_EQ(PyFloatRepr(1e100), "1e+100");
  EXPECT_EQ(PyFloatRepr(5e-324), "5e-324");
  EXPECT_EQ(PyFloatRepr(2.5e-308), "2.5e-308");
  EXPECT_EQ(PyFloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(PyFloatRepr(-2.0), "-2.0");
  EXPECT_EQ(PyFloatRepr(19.99), "19.99");
}

TEST(PyFloatReprTest, NonFiniteUsesJsonDumpsSpelling) {
  EXPECT_EQ(PyFloatRepr(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(PyFloatRepr(-std::numeric_limits<double>::infinity()), "-Infinity");
  EXPECT_EQ(PyFloatRepr(std::nan("")), "NaN");
}

TEST(PyJsonDumpsTest, UsesPythonSeparatorsAndKeepsKeyOrder) {
  EXPECT_EQ(RoundTrip(R"({"b":1,"a":[1,2,{"z":null,"y":true}],"c":{}, "d":[]})"),
            R"({"b": 1, "a": [1, 2, {"z": null, "y": true}], "c": {}, "d": []})");
  EXPECT_EQ(PyJsonDumps(Json::array()), "[]");
  EXPECT_EQ(PyJsonDumps(Json::object()), "{}");
  EXPECT_EQ(PyJsonDumps(Json(false)), "false");
}

TEST(PyJsonDumpsTest, EscapesLikePython) {
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls.push_back(static_cast<char>(c));
  EXPECT_EQ(PyJsonDumps(Json(controls)),
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
            "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
            "\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"");
  EXPECT_EQ(PyJsonDumps(Json("quote \" backslash \\ slash / del \x7f")),
            "\"quote \\\" backslash \\\\ slash / del \x7f\"");
  // Non-ASCII (including U+2028 and an emoji) stays raw; no HTML escaping.
  EXPECT_EQ(PyJsonDumps(Json("caf\u00e9 \u2028 \U0001F600 <b>&'")),
            "\"caf\u00e9 \u2028 \U0001F600 <b>&'\"");
  EXPECT_EQ(RoundTrip(R"("\u00e9\n\ud83d\ude00")"), "\"\u00e9\\n\U0001F600\"");
}

TEST(PyJsonDumpsTest, KeepsIntegersExactAndFloatsAsFloats) {
  EXPECT_EQ(RoundTrip("9007199254740993"), "9007199254740993");
  EXPECT_EQ(RoundTrip("18446744073709551615"), "18446744073709551615");
  EXPECT_EQ(RoundTrip("-9223372036854775808"), "-9223372036854775808");
  EXPECT_EQ(RoundTrip("[3.0, 1e+20, 1E20, 1e-07, -0.0, 0, -0, 2.50, 1.0e2]"),
            "[3.0, 1e+20, 1e+20, 1e-07, -0.0, 0, 0, 2.5, 100.0]");
}

TEST(ParseJsonExactTest, RejectsIntegersBeyondSixtyFourBits) {
  absl::StatusOr<Json> v = ParseJsonExact("[18446744073709551616]");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(v.status().message().find("18446744073709551616"), std::string::npos);
  EXPECT_FALSE(ParseJsonExact("-9223372036854775809").ok());
  // The same magnitude with a fraction or exponent is an ordinary float.
  EXPECT_TRUE(ParseJsonExact("18446744073709551616.0").ok());
}

TEST(ParseJsonExactTest, RejectsMalformedTextWithoutThrowing) {
  for (const char* bad : {"", "{", "[1,]", "{'a': 1}", "NaN", "1e400", "[1] x", "\"\xff\"",
                          "\"\\ud800\"", "// c\n1", "01"}) {
    absl::StatusOr<Json> v = ParseJsonExact(bad);
    EXPECT_FALSE(v.ok()) << bad;
    if (!v.ok()) {
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ParseJsonExactTest, DuplicateKeysKeepFirstPositionAndLastValue) {
  EXPECT_EQ(RoundTrip(R"({"a": 1, "b": 2, "a": 3})"), R"({"a": 3, "b": 2})");
}

TEST(ParseJsonExactTest, LargeObjectsAreIndexedWithTheSameDuplicateRule) {
  // 200k members (a tokenizer vocabulary) parse in linear time; a duplicate far into the object
  // still keeps its first position, also for a nested container value.
  std::string text = "{";
  for (int i = 0; i < 200000; ++i)
    text += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
  text += R"("k7": [1, {"x": 2}], "k199999": "last"})";
  absl::StatusOr<Json> v = ParseJsonExact(text);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->size(), 200000u);
  auto it = v->begin();
  std::advance(it, 7);
  EXPECT_EQ(it.key(), "k7");
  EXPECT_EQ(PyJsonDumps(it.value()), R"([1, {"x": 2}])");
  EXPECT_EQ((*v)["k199999"], "last");
  EXPECT_EQ((*v)["k8"], 8);
}

TEST(PyJsonDumpsIndentedTest, MatchesJsonDumpsWithIndent) {
  // Expected text: json.dumps(value, indent=2, ensure_ascii=False) in CPython 3.11.
  absl::StatusOr<Json> v =
      ParseJsonExact(R"({"b": [1, -2, 3.5, 1e20, 0.0001, 1e-05, true, null, [], {}],)"
                     R"( "a": "t\"\\\n\t\u0001\u00e9\u007f",)"
                     R"( "c": {"x": 18446744073709551615}})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(PyJsonDumpsIndented(*v, 2),
            "{\n"
            "  \"b\": [\n"
            "    1,\n"
            "    -2,\n"
            "    3.5,\n"
            "    1e+20,\n"
            "    0.0001,\n"
            "    1e-05,\n"
            "    true,\n"
            "    null,\n"
            "    [],\n"
            "    {}\n"
            "  ],\n"
            "  \"a\": \"t\\\"\\\\\\n\\t\\u0001\xC3\xA9\x7f\",\n"
            "  \"c\": {\n"
            "    \"x\": 18446744073709551615\n"
            "  }\n"
            "}");
  EXPECT_EQ(PyJsonDumpsIndented(Json::array(), 2), "[]");
  EXPECT_EQ(PyJsonDumpsIndented(Json(3.0), 2), "3.0");
}

}  // namespace
}  // namespace afd::gateway
