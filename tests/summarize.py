#!/usr/bin/python3
"""Counts individual test cases (TAP lines) across meson's test log and prints
'N passed, N failed' as the last line; skipped cases are listed separately."""
import json
import re
import sys

passed = failed = skipped = 0
failures = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = t.get("stdout") or ""
    cases = 0
    for l in out.splitlines():
        m = re.match(r"^(not ok|ok)\s+\d+\s*(.*)$", l)
        if not m:
            continue
        cases += 1
        if m.group(1) == "not ok" and "# TODO" not in l:
            failed += 1
            failures.append(f"{t['name']}: {m.group(2)}")
        elif "# SKIP" in l:
            skipped += 1
        else:
            passed += 1
    if cases == 0:
        # Not a TAP test (or it crashed before printing): count the whole test.
        if t.get("result") in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif t.get("result") == "SKIP":
            skipped += 1
        else:
            failed += 1
            failures.append(f"{t['name']}: {t.get('result')}")
    elif t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL"):
        # The process failed (crash, sanitizer report, timeout) after some cases passed.
        failed += 1
        failures.append(f"{t['name']}: {t.get('result')}")
for f in failures:
    print("FAILED", f)
print(f"{skipped} skipped")
print(f"{passed} passed, {failed} failed")
