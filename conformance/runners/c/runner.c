/* The C conformance runner: loads every case, runs its steps against the ABI,
 * compares, checks for leaked handles, fds and wrapped memory, and writes the
 * results file (conformance/README.md).
 *
 * usage: conformance-c CASES_DIR SKIP_FILE RESULTS_FILE [CASE_NAME...] */
#include "runner.h"
#include "../common/json_match.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void step_fail(Step *s, const char *format, ...) {
  if (s->error != NULL)
    return;
  va_list args;
  va_start(args, format);
  s->error = g_strdup_vprintf(format, args);
  va_end(args);
}

static char *describe(const Value *v) {
  switch (v->kind) {
  case VALUE_NONE:
    return g_strdup("nothing");
  case VALUE_JSON:
    return json_to_string(v->json, FALSE);
  case VALUE_HANDLE:
    return g_strdup_printf("handle %p", v->handle);
  case VALUE_FD:
    return g_strdup_printf("fd %d", v->fd);
  case VALUE_FDS:
    return g_strdup_printf("%u fds", v->fds->len);
  case VALUE_OBJECT:
    return g_strdup("an object of handles or fds");
  }
  return NULL;
}

/* ---- comparing results --------------------------------------------------- */

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

static bool values_match(const Value *expected, const Value *got,
                         double approx) {
  if (expected->kind == VALUE_HANDLE || got->kind == VALUE_HANDLE)
    return expected->kind == got->kind && expected->handle == got->handle;
  if (expected->kind == VALUE_FD || got->kind == VALUE_FD)
    return expected->kind == got->kind && expected->fd == got->fd;
  return expected->kind == VALUE_JSON && got->kind == VALUE_JSON &&
         tb_conf_json_matches(expected->json, got->json, approx);
}

/* Whether the result matches `expected` (a JSON value or a "$var"). */
static bool result_matches(Step *s, JsonNode *expected, double approx) {
  if (is_string(expected) && json_node_get_string(expected)[0] == '$') {
    const char *ref = json_node_get_string(expected);
    Value *v = g_hash_table_lookup(s->kase->vars, ref + 1);
    if (v == NULL) {
      step_fail(s, "%s is not bound", ref);
      return false;
    }
    return values_match(v, &s->result, approx);
  }
  if (s->result.kind == VALUE_HANDLE)
    return JSON_NODE_HOLDS_NULL(expected) && s->result.handle == NULL;
  Value literal = {.kind = VALUE_JSON, .json = expected};
  if (s->result.kind == VALUE_FD)
    return is_number(expected) && json_node_get_int(expected) == s->result.fd;
  return values_match(&literal, &s->result, approx);
}

/* Checks status, value and `not` against the step's expectation. */
static void check_expectation(Step *s, JsonObject *expect) {
  const char *want = "TB_OK";
  if (expect != NULL && json_object_has_member(expect, "status")) {
    want = json_object_get_string_member(expect, "status");
    if (!s->fallible) {
      step_fail(s, "expects a status, but the call returns none");
      return;
    }
  }
  if (s->fallible) {
    const char *got = tb_status_name(s->status);
    if (!g_str_equal(got, want)) {
      if (s->status != TB_OK)
        step_fail(s, "returned %s (%s), expected %s", got, tb_last_error(),
                  want);
      else
        step_fail(s, "returned TB_OK, expected %s", want);
      return;
    }
    if (s->status != TB_OK) {
      g_autofree char *prefix = g_strdup_printf("tb_%s: ", s->call);
      if (!g_str_has_prefix(tb_last_error(), prefix))
        step_fail(s, "tb_last_error() is \"%s\"; it should start \"%s\"",
                  tb_last_error(), prefix);
      if (s->status != TB_ERR_SYSTEM && tb_last_errno() != 0)
        step_fail(s, "tb_last_errno() is %d after %s", tb_last_errno(), got);
      return; /* a failed call has no result to compare */
    }
  }
  if (expect == NULL)
    return;
  double approx = json_object_has_member(expect, "approx")
                      ? json_object_get_double_member(expect, "approx")
                      : 0;
  JsonNode *value = json_object_get_member(expect, "value");
  JsonNode *unlike = json_object_get_member(expect, "not");
  if ((value != NULL || unlike != NULL) && s->result.kind == VALUE_NONE) {
    step_fail(s, "expects a value, but the call gives none");
    return;
  }
  if ((value != NULL || unlike != NULL) &&
      (s->result.kind == VALUE_OBJECT || s->result.kind == VALUE_FDS)) {
    step_fail(s, "a result that owns handles or fds is bound, not compared");
    return;
  }
  if (value != NULL && !result_matches(s, value, approx)) {
    g_autofree char *got = describe(&s->result);
    g_autofree char *text = json_to_string(value, FALSE);
    step_fail(s, "gave %s, expected %s", got, text);
  }
  if (unlike != NULL && result_matches(s, unlike, approx)) {
    g_autofree char *got = describe(&s->result);
    step_fail(s, "gave %s, which it must not", got);
  }
}

/* ---- running a case ------------------------------------------------------ */

/* Releases what `v` owns and frees its storage. */
static void value_discard(Value v) {
  Value *copy = g_memdup2(&v, sizeof v);
  value_release(copy);
  value_free(copy);
}

/* Binds `name` to the value (taking what it owns; *v is left empty). */
static void bind_value(Step *s, const char *name, Value *v) {
  if (v->kind == VALUE_NONE)
    step_fail(s, "binds %s, but the call gives no result", name);
  else if (g_hash_table_contains(s->kase->vars, name))
    step_fail(s, "%s is already bound", name);
  else {
    g_hash_table_insert(s->kase->vars, g_strdup(name), g_memdup2(v, sizeof *v));
    *v = (Value){.kind = VALUE_NONE};
  }
}

/* "bind": {"member": "name", ...}: each member of an object result becomes
 * a variable of its own. */
static void bind_members(Step *s, JsonObject *names) {
  g_autoptr(GList) keys = json_object_get_members(names);
  for (GList *k = keys; k != NULL && s->error == NULL; k = k->next) {
    JsonNode *name_node = json_object_get_member(names, k->data);
    const char *name =
        JSON_NODE_HOLDS_VALUE(name_node) &&
                json_node_get_value_type(name_node) == G_TYPE_STRING
            ? json_node_get_string(name_node)
            : NULL;
    if (name == NULL) {
      step_fail(s, "bind: member %s is not given a name",
                (const char *)k->data);
      return;
    }
    Value member = {.kind = VALUE_NONE};
    gpointer key = NULL, found = NULL;
    if (s->result.kind == VALUE_OBJECT &&
        g_hash_table_steal_extended(s->result.members, k->data, &key, &found)) {
      member = *(Value *)found;
      g_free(key);
      g_free(found);
    } else if (s->result.kind == VALUE_JSON &&
               JSON_NODE_HOLDS_OBJECT(s->result.json) &&
               json_object_has_member(json_node_get_object(s->result.json),
                                      k->data)) {
      member.kind = VALUE_JSON;
      member.json = json_node_copy(json_object_get_member(
          json_node_get_object(s->result.json), k->data));
    } else {
      step_fail(s, "binds member %s, which the result lacks",
                (const char *)k->data);
      return;
    }
    bind_value(s, name, &member);
    value_discard(member); /* empty if bound; released if not */
  }
}

/* Runs one step; NULL on success, else why it failed (caller frees). */
static char *run_step(Case *kase, JsonObject *step) {
  const char *call =
      json_object_get_string_member_with_default(step, "call", "");
  CallFunc func = call_lookup(call);
  if (func == NULL)
    return g_strdup_printf("unknown call \"%s\"", call);
  JsonNode *args = json_object_get_member(step, "args");
  g_autoptr(JsonObject) no_args = json_object_new();
  Step s = {
      .kase = kase,
      .call = call,
      .args = args != NULL && JSON_NODE_HOLDS_OBJECT(args)
                  ? json_node_get_object(args)
                  : no_args,
      .scratch = g_ptr_array_new_with_free_func(g_free),
  };
  func(&s);
  if (s.error == NULL) {
    JsonNode *expect = json_object_get_member(step, "expect");
    check_expectation(&s, expect != NULL && JSON_NODE_HOLDS_OBJECT(expect)
                              ? json_node_get_object(expect)
                              : NULL);
  }
  JsonNode *bind = json_object_get_member(step, "bind");
  bool succeeded = !s.fallible || s.status == TB_OK;
  if (s.error == NULL && bind != NULL && succeeded) {
    if (JSON_NODE_HOLDS_OBJECT(bind))
      bind_members(&s, json_node_get_object(bind));
    else if (!JSON_NODE_HOLDS_VALUE(bind) ||
             json_node_get_value_type(bind) != G_TYPE_STRING)
      step_fail(&s, "bind is neither a name nor an object of names");
    else if (s.result.kind == VALUE_OBJECT)
      step_fail(&s, "the result owns several things: bind its members");
    else
      bind_value(&s, json_node_get_string(bind), &s.result);
  }
  value_discard(s.result); /* what is left unbound is released at once */
  g_ptr_array_free(s.scratch, TRUE);
  return s.error;
}

/* The first requirement of `kase` not met here, or NULL. */
static const char *unmet_requirement(JsonObject *kase) {
  JsonArray *requires = json_object_has_member(kase, "requires")
                            ? json_object_get_array_member(kase, "requires")
                            : NULL;
  for (guint i = 0; requires != NULL && i < json_array_get_length(requires);
       i++) {
    const char *term = json_array_get_string_element(requires, i);
    bool negated = term[0] == '!';
    tb_memory memory;
    if (!memory_by_name(term + negated, &memory))
      return term;
    if (tb_memory_available(memory) == negated)
      return term;
  }
  return NULL;
}

static void restore_env(gpointer name, gpointer original, gpointer unused) {
  (void)unused;
  if (original != NULL)
    g_setenv(name, original, TRUE);
  else
    g_unsetenv(name);
}

/* Releases what the case still holds, maps before the rest. */
static void release_all(GHashTable *vars) {
  GHashTableIter iter;
  Value *v;
  for (int pass = 0; pass < 2; pass++) {
    g_hash_table_iter_init(&iter, vars);
    while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&v)) {
      bool is_map = v->kind == VALUE_HANDLE && v->handle_type == HANDLE_MAP;
      if (is_map == (pass == 0))
        value_release(v);
    }
  }
}

typedef enum Outcome { PASSED, FAILED, SKIPPED } Outcome;

static Outcome run_case(JsonObject *kase, char **why) {
  const char *unmet = unmet_requirement(kase);
  if (unmet != NULL) {
    *why = g_strdup_printf("requires %s", unmet);
    return SKIPPED;
  }
  Case c = {
      .vars =
          g_hash_table_new_full(g_str_hash, g_str_equal, g_free, value_free),
      .wraps = g_ptr_array_new_with_free_func(g_free),
      .env = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free),
      .live_at_start = tb_live_objects(),
  };
  int fds_at_start = open_fd_count();

  JsonArray *steps = json_object_get_array_member(kase, "steps");
  for (guint i = 0; *why == NULL && i < json_array_get_length(steps); i++) {
    JsonObject *step = json_array_get_object_element(steps, i);
    g_autofree char *error = run_step(&c, step);
    if (error != NULL)
      *why = g_strdup_printf(
          "step %u (%s): %s", i + 1,
          json_object_get_string_member_with_default(step, "call", "?"), error);
  }

  release_all(c.vars);
  g_hash_table_destroy(c.vars);
  g_hash_table_foreach(c.env, restore_env, NULL);
  g_hash_table_destroy(c.env);

  GString *leaks = g_string_new(NULL);
  int64_t live = tb_live_objects() - c.live_at_start;
  if (live != 0)
    g_string_append_printf(leaks, "; %" G_GINT64_FORMAT " live objects leaked",
                           live);
  int fds = open_fd_count() - fds_at_start;
  if (fds != 0)
    g_string_append_printf(leaks, "; %d fds leaked", fds);
  for (guint i = 0; i < c.wraps->len; i++) {
    WrapBlock *block = g_ptr_array_index(c.wraps, i);
    if (block->destroyed != (block->wrapped ? 1 : 0))
      g_string_append_printf(leaks, "; wrapped block %u destroyed %d times",
                             i + 1, block->destroyed);
  }
  g_ptr_array_free(c.wraps, TRUE);
  if (leaks->len > 0) {
    char *with_leaks = g_strconcat(*why != NULL ? *why : "after the last step",
                                   leaks->str, NULL);
    g_free(*why);
    *why = with_leaks;
  }
  g_string_free(leaks, TRUE);
  return *why != NULL ? FAILED : PASSED;
}

/* ---- files --------------------------------------------------------------- */

/* The skip file: case name -> reason. */
static GHashTable *read_skip_file(const char *path) {
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  if (!g_file_get_contents(path, &text, NULL, &error)) {
    fprintf(stderr, "conformance[c]: %s\n", error->message);
    exit(2);
  }
  GHashTable *skips =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (char **line = lines; *line != NULL; line++) {
    char *entry = g_strstrip(*line);
    if (*entry == '\0' || *entry == '#')
      continue;
    size_t name_len = strcspn(entry, " \t");
    char *reason = g_strstrip(g_strdup(entry + name_len));
    g_hash_table_insert(skips, g_strndup(entry, name_len), reason);
  }
  return skips;
}

static gint compare_paths(gconstpointer a, gconstpointer b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.json under `dir`, sorted by name. */
static GPtrArray *case_files(const char *dir) {
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) d = g_dir_open(dir, 0, &error);
  if (d == NULL) {
    fprintf(stderr, "conformance[c]: %s\n", error->message);
    exit(2);
  }
  GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(d)) != NULL) {
    if (g_str_has_suffix(name, ".json"))
      g_ptr_array_add(files, g_build_filename(dir, name, NULL));
  }
  g_ptr_array_sort(files, compare_paths);
  return files;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s CASES_DIR SKIP_FILE RESULTS_FILE [CASE...]\n",
            argv[0]);
    return 2;
  }
  g_autoptr(GHashTable) skips = read_skip_file(argv[2]);
  FILE *results = fopen(argv[3], "w");
  if (results == NULL) {
    perror(argv[3]);
    return 2;
  }
  g_autoptr(GPtrArray) files = case_files(argv[1]);
  g_autoptr(GHashTable) seen =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  unsigned counts[3] = {0, 0, 0};
  static const char *const words[] = {"passed", "failed", "skipped"};

  for (guint f = 0; f < files->len; f++) {
    const char *path = g_ptr_array_index(files, f);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    if (!json_parser_load_from_file(parser, path, &error)) {
      fprintf(stderr, "conformance[c]: %s: %s\n", path, error->message);
      return 2;
    }
    JsonArray *cases = json_object_get_array_member(
        json_node_get_object(json_parser_get_root(parser)), "cases");
    for (guint i = 0; i < json_array_get_length(cases); i++) {
      JsonObject *kase = json_array_get_object_element(cases, i);
      const char *name = json_object_get_string_member(kase, "name");
      bool wanted = argc == 4;
      for (int a = 4; a < argc; a++)
        wanted |= g_str_equal(argv[a], name);
      if (!wanted)
        continue;
      g_autofree char *why = NULL;
      Outcome outcome;
      if (g_hash_table_contains(skips, name)) {
        why = g_strdup(g_hash_table_lookup(skips, name));
        outcome = SKIPPED;
      } else if (!g_hash_table_add(seen, g_strdup(name))) {
        why = g_strdup("the name of an earlier case");
        outcome = FAILED;
      } else {
        outcome = run_case(kase, &why);
      }
      counts[outcome]++;
      if (outcome == PASSED)
        printf("PASS %s\n", name);
      else
        printf("%s %s: %s\n", outcome == FAILED ? "FAIL" : "SKIP", name, why);
      fprintf(results, "%s\t%s\n", name, words[outcome]);
      fflush(results);
    }
  }
  fclose(results);
  printf("conformance[c]: %u passed, %u failed, %u skipped\n", counts[PASSED],
         counts[FAILED], counts[SKIPPED]);
  /* 77 when every case selected skipped: ctest reports the run as skipped. */
  return counts[FAILED] > 0                           ? 1
         : counts[PASSED] == 0 && counts[SKIPPED] > 0 ? 77
                                                      : 0;
}
