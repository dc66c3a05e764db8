// Argument typing (PARSING.md §5): type sets of JSON schemas, the conversion table, strict JSON,
// and which tool's schema applies.
#include "gateway/parsing/tool_schemas.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gateway/chat/py_json.h"
#include "gtest/gtest.h"

namespace afd::gateway {
namespace {

using Json = nlohmann::ordered_json;

// Converted value under `schema`, spelled as JSON so integers and floats differ (3 vs 3.0).
std::string Convert(const char* schema, const std::string& value) {
  return PyJsonDumps(ConvertArgumentValue(value, SchemaTypeSet(Json::parse(schema))));
}

TEST(SchemaTypeSetTest, CollectsTypesEnumsAndCombinators) {
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"type": "INTEGER"})")), kTypeInteger);
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"type": ["string", "null"]})")),
            kTypeString | kTypeOther);
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"enum": [1, 2.5, "a", true, null, [1], {}]})")),
            kTypeInteger | kTypeNumber | kTypeString | kTypeBoolean | kTypeOther | kTypeArray |
                kTypeObject);
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"anyOf": [{"type": "integer"}, {}]})")),
            kTypeInteger | kTypeString);
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"oneOf": [{"allOf": [{"type": "bool"}]}]})")),
            kTypeBoolean);
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"description": "no type"})")), kTypeString);
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"("integer")")), kTypeString);  // not an object
  EXPECT_EQ(SchemaTypeSet(Json::parse(R"({"type": "date"})")), kTypeOther);
}

TEST(ConvertArgumentValueTest, IntegerSchema) {
  const char* s = R"({"type": "integer"})";
  EXPECT_EQ(Convert(s, "42"), "42");
  EXPECT_EQ(Convert(s, " 12 "), "12");
  EXPECT_EQ(Convert(s, "+7"), "7");
  EXPECT_EQ(Convert(s, "-0"), "0");
  EXPECT_EQ(Convert(s, "3.5"), "3.5");
  EXPECT_EQ(Convert(s, "3.0"), "3.0");
  EXPECT_EQ(Convert(s, "1e3"), "1000.0");
  EXPECT_EQ(Convert(s, "twelve"), "\"twelve\"");
  EXPECT_EQ(Convert(s, "12 apples"), "\"12 apples\"");
  EXPECT_EQ(Convert(s, "1_000"), "\"1_000\"");
  EXPECT_EQ(Convert(s, "\u0661\u0662"), "\"\u0661\u0662\"");
  EXPECT_EQ(Convert(s, "[1, 2]"), "[1, 2]");
  EXPECT_EQ(Convert(s, "18446744073709551615"), "18446744073709551615");
  EXPECT_EQ(Convert(s, "-9223372036854775808"), "-9223372036854775808");
  EXPECT_EQ(Convert(s, "18446744073709551616"), "1.8446744073709552e+19");  // JSON: a double
  EXPECT_EQ(Convert(s, "-9223372036854775809"), "-9.223372036854776e+18");
}

TEST(ConvertArgumentValueTest, NumberSchema) {
  const char* s = R"({"type": "number"})";
  EXPECT_EQ(Convert(s, "0.75"), "0.75");
  EXPECT_EQ(Convert(s, "2.0"), "2");
  EXPECT_EQ(Convert(s, "1e3"), "1000");
  EXPECT_EQ(Convert(s, "-0.5"), "-0.5");
  EXPECT_EQ(Convert(s, ".5"), "0.5");
  EXPECT_EQ(Convert(s, "5."), "5");
  EXPECT_EQ(Convert(s, "+2.5E-1"), "0.25");
  EXPECT_EQ(Convert(s, "1e20"), "1e+20");
  EXPECT_EQ(Convert(s, "1.8446744073709550e19"), "18446744073709549568");
  EXPECT_EQ(Convert(s, "18446744073709551615.0"), "1.8446744073709552e+19");  // 2^64: a double
  EXPECT_EQ(Convert(s, "-9223372036854775808.0"), "-9223372036854775808");
  EXPECT_EQ(Convert(s, "1e-400"), "0");  // nearest double is 0, which is integral
  EXPECT_EQ(Convert(s, "inf"), "\"inf\"");
  EXPECT_EQ(Convert(s, "NaN"), "\"NaN\"");
  EXPECT_EQ(Convert(s, "1e400"), "\"1e400\"");
  EXPECT_EQ(Convert(s, "0.000000000000000000000000000001e400"),
            "\"0.000000000000000000000000000001e400\"");
  EXPECT_EQ(Convert(s, "1e"), "\"1e\"");
  EXPECT_EQ(Convert(s, "."), "\".\"");
}

TEST(ConvertArgumentValueTest, BooleanSchema) {
  const char* s = R"({"type": "boolean"})";
  for (const char* t : {"True", "yes", "ON", "1", " true "}) EXPECT_EQ(Convert(s, t), "true") << t;
  for (const char* f : {"FALSE", "no", "Off", "0"}) EXPECT_EQ(Convert(s, f), "false") << f;
  EXPECT_EQ(Convert(s, "maybe"), "\"maybe\"");
  EXPECT_EQ(Convert(s, "2"), "2");
}

TEST(ConvertArgumentValueTest, StringSchemaKeepsTheUntrimmedValue) {
  const char* s = R"({"type": "string"})";
  EXPECT_EQ(Convert(s, "123"), "\"123\"");
  EXPECT_EQ(Convert(s, "true"), "\"true\"");
  EXPECT_EQ(Convert(s, "  x\t"), "\"  x\\t\"");
  EXPECT_EQ(Convert(s, "{\"a\": 1}"), "\"{\\\"a\\\": 1}\"");
  EXPECT_EQ(Convert(s, "None"), "null");
  EXPECT_EQ(Convert(s, " nil "), "null");
  EXPECT_EQ(Convert(s, ""), "\"\"");
}

TEST(ConvertArgumentValueTest, ObjectAndArraySchemas) {
  EXPECT_EQ(Convert(R"({"type": "array"})", "[\"a\"]"), "[\"a\"]");
  EXPECT_EQ(Convert(R"({"type": "object"})", "{\"depth\": 2, \"depth\": 3, \"a\": 1.0}"),
            "{\"depth\": 3, \"a\": 1.0}");
  EXPECT_EQ(Convert(R"({"type": "array"})", "a, b"), "\"a, b\"");
  EXPECT_EQ(Convert(R"({"type": "array"})", "42"), "42");
  EXPECT_EQ(Convert(R"({"type": "object"})", "{depth: 2}"), "\"{depth: 2}\"");
  EXPECT_EQ(Convert(R"({"type": "object"})", "{\"a\": 1} trailing"), "\"{\\\"a\\\": 1} trailing\"");
  EXPECT_EQ(Convert(R"({"type": "object"})", "{\"a\": NaN}"), "\"{\\\"a\\\": NaN}\"");
}

TEST(ConvertArgumentValueTest, NullableEnumAndUntypedSchemas) {
  EXPECT_EQ(Convert(R"({"anyOf": [{"type": "integer"}, {"type": "null"}]})", "25"), "25");
  EXPECT_EQ(Convert(R"({"anyOf": [{"type": "integer"}, {"type": "null"}]})", "null"), "null");
  EXPECT_EQ(Convert(R"({"type": ["string", "null"]})", "hello"), "\"hello\"");
  EXPECT_EQ(Convert(R"({"enum": [1, 2, 3]})", "2"), "2");
  EXPECT_EQ(Convert(R"({"enum": ["fast", "slow"]})", "fast"), "\"fast\"");
  EXPECT_EQ(Convert(R"({"anyOf": [{"type": "integer"}, {}]})", "x"), "\"x\"");
  // A type set without any convertible name falls back to JSON, then the text.
  EXPECT_EQ(Convert(R"({"type": "null"})", "5"), "5");
  EXPECT_EQ(Convert(R"({"type": "date"})", "2025-01-01"), "\"2025-01-01\"");
  EXPECT_EQ(Convert(R"({})", "3"), "\"3\"");
}

TEST(ParseStrictJsonTest, IsStrictRfc8259) {
  Json v;
  EXPECT_TRUE(ParseStrictJson("{\"a\": [1, -2, 3.5, 1e2]}", &v));
  EXPECT_TRUE(v["a"][3].is_number_float());
  for (const char* bad : {"\xEF\xBB\xBF{}", "NaN", "[Infinity]", "{} x", "// c\n{}", "{'a': 1}",
                          "\"\\udc00\"", "[1e999]", "", " "}) {
    EXPECT_FALSE(ParseStrictJson(bad, &v)) << bad;
  }
}

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"days": {"type": "integer"}, "city": {"type": "string"}}}}},
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "integer"}}}}},
  {"type": "function", "function": {"name": "ping"}},
  {"type": "function"},
  "garbage"])";

TEST(ToolSchemasTest, UsesTheFirstToolOfEachName) {
  const ToolSchemas tools(Json::parse(kTools));
  EXPECT_TRUE(tools.tool_parsing_enabled());
  EXPECT_EQ(tools.ParameterTypeSet("get_weather", "days"), kTypeInteger);
  EXPECT_EQ(tools.ParameterTypeSet("get_weather", "city"), kTypeString);
  EXPECT_EQ(tools.ParameterTypeSet("get_weather", "extra"), kTypeString);
  EXPECT_EQ(tools.ParameterTypeSet("ping", "host"), kTypeString);
  EXPECT_EQ(tools.ParameterTypeSet("send_email", "to"), kTypeString);
  EXPECT_EQ(PyJsonDumps(tools.ConvertValue("get_weather", "days", "3")), "3");
  EXPECT_EQ(PyJsonDumps(tools.ConvertValue("send_email", "count", "3")), "\"3\"");
}

TEST(ToolSchemasTest, NoToolsTurnsToolParsingOff) {
  EXPECT_FALSE(ToolSchemas().tool_parsing_enabled());
  EXPECT_FALSE(ToolSchemas(Json(nullptr)).tool_parsing_enabled());
  EXPECT_FALSE(ToolSchemas(Json::array()).tool_parsing_enabled());
  EXPECT_FALSE(ToolSchemas(Json::object()).tool_parsing_enabled());
}

}  // namespace
}  // namespace afd::gateway
