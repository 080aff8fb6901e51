"""What the subcommands print instead of JSON: aligned tables, the version matrix, a device's
inspection, an approval request in one cell; and the on/off values their flags take."""
from __future__ import annotations

from gateway.client.http import CliError


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def onoff(v: str | None) -> bool | None:
    if v is None:
        return None
    if v.lower() in ("on", "true", "yes", "1"):
        return True
    if v.lower() in ("off", "false", "no", "0"):
        return False
    raise CliError(f"expected on/off, got {v!r}")


def format_matrix(m: dict) -> str:
    """A readable version matrix: rows = current version, columns = next version."""
    cols = m["columns"]
    rows = []
    for name, cells, total, share in zip(m["rows"], m["cells"], m["row_totals"], m["staged_share"]):
        rows.append([name] + [c or "." for c in cells] + [total, f"{share:.0%}"])
    out = [f"cohort {m['cohort']} · software type {m['software_type']} · {m['devices']} devices "
           f"({m['staged_devices']} staged)",
           table(rows, ["current \\ next"] + cols + ["total", "staged"]), "", "active releases:"]
    for r in m["active_releases"]:
        label = f"{r['delta_from']} -> {r['version']}" if r["delta_from"] else r["version"]
        staged = (f" staged {r['rollout_percent']}% (actually {m['staged_devices']} of {m['devices']})"
                  if r["staged"] else "")
        out.append(f"  {label:<20} {r['kind']}{staged}")
    out.append(f"target version: {m['target_version'] or '-'}"
               + (f" (staged: {m['staged_target_version']})" if m["staged_target_version"] != m["target_version"]
                  else ""))
    return "\n".join(out)


def format_inspect(d: dict) -> str:
    out = [f"device {d['device_serial']} · hardware {d['hardware_version'] or '-'} · cohort {d['cohort']}"
           f"{' · staged' if d['staged'] else ''}{'' if d['registered'] else ' · not registered'}"]
    for sw in d["software"]:
        out.append(f"\n[{sw['software_type']}] current version: {sw['current_version'] or '(none)'}")
        for proto in ("memfault", "ddi"):
            if proto in sw:
                a = sw[proto]
                out.append(f"  {proto:<9} -> {a.get('release') or 'nothing'} (reason: {a.get('reason')})")
        rules = sw["rules"]
        out.append(f"  override: {rules['override']['release'] if rules['override'] else 'none'}")
        t = rules["table"]
        if t and t.get("table", True) is not None and "full" in t:
            out.append(f"  delta from current: {t['delta']['to'] if t['delta'] else 'none'}")
            mpts = ", ".join(m["version"] for m in t["must_pass_through"]) or "none"
            out.append(f"  must-pass-through: {mpts}")
            out.append(f"  top full: {t['full']['version'] if t['full'] else 'none'}"
                       f"  (version checking {'on' if t['version_checking'] else 'off'})")
        for k in sw.get("with_project_key_cohort_override", []):
            out.append(f"  with key {k['key_name'] or k['key_id']} (cohort {k['cohort']}): "
                       f"{k['release'] or 'nothing'} ({k['reason']})")
    return "\n".join(out)


def request_what(q: dict) -> str:
    """What an approval request would change, in one cell."""
    if q["action"] in ("activate", "deactivate") and q.get("release"):
        rel = q["release"]
        what = (f"{rel['delta_from']} -> " if rel["delta_from"] else "") + rel["version"]
        return what + (f" ({q['rollout_percent']}%)" if q["type"] == "staged_rollout" else "")
    return ", ".join(f"{k}={v}" for k, v in sorted((q.get("change") or {}).items()))
