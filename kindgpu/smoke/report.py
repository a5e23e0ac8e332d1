"""What a smoke run reports: the JUnit XML file and the table (or JSON) on the terminal."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .. import console


def junit_xml(outcome, cluster, dra=False):
    """A JUnit report: one test case per worker, plus the limit check. dra: GPUs were asked through
    ResourceClaims (`gpuAllocation: dra`): every name says so ("[dra]")."""
    cases = [(f"{outcome.level}[{w['node']}]", w["ok"], w["message"]) for w in outcome.workers]
    cases.append(("gpu-limit-enforced", outcome.limit.get("ok", False), outcome.limit.get("message", "")))
    for w in outcome.cpu_workers:
        cases.append((f"cpu-only-sees-no-gpu[{w['node']}]", w["ok"], w["message"]))
        cases.append((f"cpu-only-gpu-ask-pending[{w['node']}]", w["gpuAsk"].get("ok", False),
                      w["gpuAsk"].get("message", "")))
    cases += [(c["name"], c["ok"], c["message"]) for c in outcome.checks]
    suite = ET.Element("testsuite", name=f"kindgpu-smoke-{cluster}", tests=str(len(cases)),
                       failures=str(sum(not ok for _, ok, _ in cases)), time=f"{outcome.seconds:.2f}")
    for name, ok, message in cases:
        case = ET.SubElement(suite, "testcase", classname=f"kindgpu.smoke.{outcome.level}" + (".dra" if dra else ""),
                             name=f"{name}[dra]" if dra else name)
        if not ok:
            ET.SubElement(case, "failure", message=message[:500]).text = message
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def show(outcome, cluster, as_json):
    if as_json:
        console.print_json({"cluster": cluster, **outcome.to_dict()})
        return
    console.table(f"Smoke ({outcome.level}) on {cluster}: {'PASS' if outcome.ok else 'FAIL'}",
                  ["worker", "node", "expected GPUs", "seen GPUs", "result"],
                  [(w["worker"], w["node"],
                    "\n".join(sorted(w["expected"])) or f"{w['expectedCount']} (as the node offers)",
                    "\n".join(sorted(u for u in w["seen"] if u)),
                    "pass" if w["ok"] else w["message"]) for w in outcome.workers]
                  + [("cpu-only", w["node"], "(none)", "\n".join(w["seen"]) or "(none)",
                      "pass" if w["ok"] else w["message"]) for w in outcome.cpu_workers])
    print(f"GPU limit: {'enforced' if outcome.limit.get('ok') else 'NOT enforced'} "
          f"({outcome.limit.get('message', '')})")
    for w in outcome.cpu_workers:
        ask = w["gpuAsk"]
        print(f"GPU asked of CPU-only {w['node']}: {'Pending' if ask.get('ok') else 'NOT refused'} "
              f"({ask.get('message', '')})")
    if outcome.sharing != "not shared":
        print(f"GPU sharing: {outcome.sharing}")
    for c in outcome.checks:
        print(f"{c['name']}: {'pass' if c['ok'] else 'FAIL'} ({c['message']})")
    if not outcome.ok:
        print(outcome.message)
