/* The format's rule for comparing an expected JSON value with a result
 * (conformance/README.md, "Expectations"), shared by the C and libffi
 * runners: they differ in how they call the library, not in what a match
 * is. */
#include "json_match.h"

#include <math.h>

static bool is_number(JsonNode *n) {
  if (!JSON_NODE_HOLDS_VALUE(n))
    return false;
  GType type = json_node_get_value_type(n);
  return type == G_TYPE_INT64 || type == G_TYPE_DOUBLE;
}

static bool is_string(JsonNode *n) {
  return JSON_NODE_HOLDS_VALUE(n) &&
         json_node_get_value_type(n) == G_TYPE_STRING;
}

/* A string standing for a number: "nan", "inf", "-inf" or a big integer. */
static bool number_matches_text(const char *text, JsonNode *got) {
  if (json_node_get_value_type(got) == G_TYPE_DOUBLE) {
    double d = json_node_get_double(got);
    if (g_str_equal(text, "nan"))
      return isnan(d);
    if (g_str_equal(text, "inf") || g_str_equal(text, "-inf"))
      return isinf(d) && (d < 0) == (text[0] == '-');
    return false;
  }
  g_autofree char *got_text =
      g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(got));
  return g_str_equal(text, got_text);
}

bool tb_conf_json_matches(JsonNode *expected, JsonNode *got, double approx) {
  if (JSON_NODE_HOLDS_NULL(expected) || JSON_NODE_HOLDS_NULL(got))
    return JSON_NODE_HOLDS_NULL(expected) && JSON_NODE_HOLDS_NULL(got);
  if (JSON_NODE_HOLDS_OBJECT(expected)) {
    if (!JSON_NODE_HOLDS_OBJECT(got))
      return false;
    JsonObject *e = json_node_get_object(expected);
    JsonObject *g = json_node_get_object(got);
    if (json_object_get_size(e) != json_object_get_size(g))
      return false;
    g_autoptr(GList) names = json_object_get_members(e);
    for (GList *n = names; n != NULL; n = n->next) {
      JsonNode *member = json_object_get_member(g, n->data);
      if (member == NULL ||
          !tb_conf_json_matches(json_object_get_member(e, n->data), member,
                                approx))
        return false;
    }
    return true;
  }
  if (!JSON_NODE_HOLDS_VALUE(expected) || !JSON_NODE_HOLDS_VALUE(got))
    return false;
  if (is_string(expected) && is_string(got))
    return g_str_equal(json_node_get_string(expected),
                       json_node_get_string(got));
  if (is_string(expected) && is_number(got))
    return number_matches_text(json_node_get_string(expected), got);
  if (is_number(expected) && is_number(got)) {
    if (json_node_get_value_type(expected) == G_TYPE_INT64 &&
        json_node_get_value_type(got) == G_TYPE_INT64)
      return json_node_get_int(expected) == json_node_get_int(got);
    return fabs(json_node_get_double(expected) - json_node_get_double(got)) <=
           approx;
  }
  if (json_node_get_value_type(expected) == G_TYPE_BOOLEAN &&
      json_node_get_value_type(got) == G_TYPE_BOOLEAN)
    return json_node_get_boolean(expected) == json_node_get_boolean(got);
  return false;
}
