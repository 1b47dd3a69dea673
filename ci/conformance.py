"""Helpers of ci/conformance (run with the venv it builds, which has python-pkcs11).

  slot MODULE LABEL            print the slot ID of the token LABEL
  mechanisms MODULE LABEL      print the token's mechanisms as SoftHSM2's slots.mechanisms wants them
  compare RUNS DOC SUITE...    the per-test comparison; exit 1 for a difference DOC gives no reason for
"""

import fnmatch
import glob
import re
import sys
import xml.etree.ElementTree as ET


def token(module, label):
    import pkcs11

    return pkcs11.lib(module).get_token(token_label=label)


def slot(module, label):
    print(token(module, label).slot.slot_id)


def mechanisms(module, label):
    names = []
    for m in token(module, label).slot.get_mechanisms():
        name = getattr(m, "name", None)
        # Vendor mechanisms (plain ints) have no CKM_ name SoftHSM2 would know.
        if name is not None and not name.startswith("_"):
            names.append("CKM_" + name)
    print(",".join(sorted(names)))


def results(pattern):
    """{test id: 'pass' | 'fail' | 'skip'} from the JUnit XML reports (gtest's or pytest's)
    matching `pattern`."""
    out = {}
    for path in sorted(glob.glob(pattern)):
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            continue
        out.update(cases(root))
    return out


def cases(root):
    out = {}
    for case in root.iter("testcase"):
        test = f"{case.get('classname')}.{case.get('name')}"
        param = case.get("value_param")
        if param:  # gtest's parameterised tests: the parameter, not only its index
            test += " (" + param.strip('"') + ")"
        if case.find("failure") is not None or case.find("error") is not None:
            out[test] = "fail"
        elif case.find("skipped") is not None or case.get("status") == "notrun" or case.get("result") == "skipped":
            out[test] = "skip"
        else:
            out[test] = "pass"
    return out


def reasons(doc):
    """[(suite, mode, test pattern, reason)] from the table rows of docs/conformance.md whose
    first cell is a suite name: | suite | mode | test (glob) | reason |."""
    rows = []
    for line in open(doc, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("pkcs11test", "python"):
            suite, mode, pattern, why = cells
            rows.append((suite, mode, pattern.strip("`"), why))
    return rows


def reason_for(rows, suite, mode, test):
    for s, m, pattern, why in rows:
        if s == suite and m in (mode, "both") and fnmatch.fnmatchcase(test, pattern):
            return why
    return None


def count(res):
    c = {"pass": 0, "fail": 0, "skip": 0}
    for v in res.values():
        c[v] += 1
    return f"{c['pass']} pass / {c['fail']} fail / {c['skip']} skip"


def compare(runs, doc, suites):
    rows = reasons(doc)
    unexplained = 0
    for suite in suites:
        for mode in ("self-managed", "hsm"):
            soft = results(f"{runs}/softhsm-{mode}/{suite}/{suite}*.xml")
            kg = results(f"{runs}/{mode}/{suite}/{suite}*.xml")
            print(f"\n== {suite}, {mode}: SoftHSM2 (same mechanisms) {count(soft)}; keygate {count(kg)}")
            behind = sorted(t for t, r in soft.items() if r == "pass" and kg.get(t) != "pass")
            ahead = sorted(t for t, r in kg.items() if r == "pass" and soft.get(t) != "pass")
            for t in behind:
                why = reason_for(rows, suite, mode, t)
                if why is None:
                    unexplained += 1
                    why = "NO REASON in docs/conformance.md"
                print(f"  passes on SoftHSM2, {kg.get(t, 'absent')} on keygate: {t}: {why}")
            print(f"  {len(behind)} behind SoftHSM2; {len(ahead)} passing on keygate only")
            if not kg:
                print("  keygate left no report")
                unexplained += 1
    print(f"\nconformance: {unexplained} difference(s) without a reason")
    return 1 if unexplained else 0


def main(argv):
    verb, args = argv[1], argv[2:]
    if verb == "slot":
        slot(*args)
    elif verb == "mechanisms":
        mechanisms(*args)
    elif verb == "compare":
        sys.exit(compare(args[0], args[1], args[2:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
