/* Comparing expected JSON values with results, as the format defines it. */
#ifndef TB_CONF_JSON_MATCH_H
#define TB_CONF_JSON_MATCH_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

/* Whether `got` matches `expected`: objects member by member, "nan",
 * "inf", "-inf" and decimal strings against numbers, numbers within
 * `approx`. */
bool tb_conf_json_matches(JsonNode *expected, JsonNode *got, double approx);

#endif
