#!/usr/bin/env python3
"""The closing summary of `./run test`, from one ctest run.

usage: ctest_summary.py PRESET JUNIT TESTS_JSON

JUNIT is ctest's `--output-junit` file (each test's status and output; run
ctest with a large `--test-output-size-passed`, or a passed test's output is
cut before its last lines), TESTS_JSON is `ctest --show-only=json-v1` (each
test's labels). Prints, for a reader who will not open a log:

- the totals, and per label: passed, skipped, failed;
- every `conformance[...]: N passed, N failed, N skipped` line;
- every skip with its reason, grouped by reason: whole tests that ctest
  reports as skipped (they exit 77, SKIP_RETURN_CODE) and the cases skipped
  inside a test that passed (cmocka's `skipped: why` before `[  SKIPPED ]`,
  `SKIP case: why` from the conformance runners and the Lua tests, pytest's
  `SKIPPED [n] file:line: why` with -rs);
- the failed tests.

Exits 0: whether the run failed is ctest's exit status to tell.
"""

import collections
import json
import re
import sys
import xml.etree.ElementTree as ET

CONFORMANCE_LINE = re.compile(r"^conformance\[[^\]]+\]: .*$", re.M)
# (case, reason) pairs inside one test's output.
RUNNER_SKIP = re.compile(r"^SKIP\s+(\S+): (.*)$", re.M)
PYTEST_SKIP = re.compile(r"^SKIPPED \[\d+\] ([^\n]+?:\d+): (.*)$", re.M)
CMOCKA_SKIP = re.compile(r"^skipped: (.*)\n(?:.*\n)*?\[  SKIPPED \] (\S+)$", re.M)
# Why a whole test skipped: the line it printed saying so.
WHOLE_SKIP = re.compile(r"^.*\bskipped\b:?\s*(.*)$", re.M | re.I)


def case_skips(output):
    """Yields (case, reason) for every case skipped inside a test."""
    for match in RUNNER_SKIP.finditer(output):
        yield match.group(1), match.group(2).strip()
    for match in PYTEST_SKIP.finditer(output):
        yield match.group(1), match.group(2).strip()
    for match in CMOCKA_SKIP.finditer(output):
        yield match.group(2), match.group(1).strip()


def whole_skip_reason(testcase, output):
    skipped = testcase.find("skipped")
    for match in WHOLE_SKIP.finditer(output):
        if match.group(1).strip():
            return match.group(1).strip()
    if skipped is not None and skipped.get("message"):
        return skipped.get("message")
    return "no reason printed (its output is in the log)"


def labels_by_test(tests_json):
    with open(tests_json, encoding="utf-8") as file:
        listing = json.load(file)
    labels = {}
    for test in listing.get("tests", []):
        for prop in test.get("properties", []):
            if prop.get("name") == "LABELS":
                labels[test["name"]] = list(prop.get("value", []))
        labels.setdefault(test["name"], [])
    return labels


def outcome_of(testcase):
    status = testcase.get("status", "")
    if testcase.find("failure") is not None or status == "fail":
        return "failed"
    if testcase.find("skipped") is not None or status in ("notrun", "disabled"):
        return "skipped"
    return "passed"


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    preset, junit, tests_json = argv[1:]
    labels = labels_by_test(tests_json)
    root = ET.parse(junit).getroot()

    totals = collections.Counter()
    per_label = collections.defaultdict(collections.Counter)
    conformance_lines = []
    skips = collections.defaultdict(list)  # reason -> ["test: case", ...]
    failed = []
    for testcase in root.iter("testcase"):
        name = testcase.get("name")
        output = testcase.findtext("system-out") or ""
        outcome = outcome_of(testcase)
        totals[outcome] += 1
        for label in labels.get(name, []) or ["(no label)"]:
            per_label[label][outcome] += 1
        conformance_lines += CONFORMANCE_LINE.findall(output)
        if outcome == "skipped":
            skips[whole_skip_reason(testcase, output)].append(name + " (whole test)")
        for case, reason in case_skips(output):
            skips[reason].append(f"{name}: {case}")
        if outcome == "failed":
            failed.append(name)

    def counts(counter):
        return ", ".join(f"{counter[word]} {word}"
                         for word in ("passed", "skipped", "failed")
                         if counter[word] or word == "passed")

    print(f"==> summary of preset {preset}: {sum(totals.values())} tests, "
          f"{counts(totals)}")
    width = max((len(label) for label in per_label), default=0)
    for label in sorted(per_label):
        print(f"  {label:<{width}}  {counts(per_label[label])}")
    for line in conformance_lines:
        print(f"  {line}")
    skipped_cases = sum(len(where) for where in skips.values())
    if skipped_cases:
        print(f"  skipped ({skipped_cases}), by reason:")
        for reason in sorted(skips, key=lambda r: (-len(skips[r]), r)):
            where = skips[reason]
            print(f"    {reason}: {', '.join(where)}")
    if failed:
        print(f"  FAILED ({len(failed)}): {' '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
