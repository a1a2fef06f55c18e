#!/usr/bin/python3
"""Markdown tables from one scripts/bench.sh run (standard library only).

  report.py OUT [--docs docs/bench/README.md]

Reads OUT/summary.csv and OUT/meta.json, writes OUT/summary.md, and with
--docs replaces the text between the markers
  <!-- bench:results:begin --> ... <!-- bench:results:end -->
in that file, so a re-run refreshes the published figures.
"""

import csv
import json
import os
import sys

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

PEER_LABEL = {
    "tidings": "Tidings",
    "tidings-normal": "Tidings (durability normal)",
    "nchan": "nginx + nchan",
    "socketio": "Socket.IO",
    "socketio-recovery": "Socket.IO + recovery",
    "ws": "ws (no history)",
    "floor": "floor: sends only, no server",
}

SCENARIO_TITLE = {
    "fanout-1room": "(i) fan-out, one room",
    "fanout-rooms": "(ii) fan-out, many rooms",
    "fanout-1room-half": "(iii) fan-out, one room, half rate",
    "fanout-rooms-half": "(iii) fan-out, many rooms, half rate",
    "idle-10k": "(iv) idle connections, 10k",
    "idle-50k": "(iv) idle connections, 50k",
    "storm": "(v) reconnect storm",
    "history-full": "(vi) history, durability=full",
    "history-normal": "(vi) history, durability=normal",
}


def num(v):
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def f0(v):
    return "-" if v is None else "{:,.0f}".format(v)


def f1(v):
    if v is None:
        return "-"
    return "{:,.1f}".format(v) if abs(v) < 100 else "{:,.0f}".format(v)


def f2(v):
    if v is None:
        return "-"
    return "{:,.2f}".format(v) if abs(v) < 10 else f1(v)


def kib(v):
    return "-" if v is None else "{:,.1f}".format(v / 1024)


def ratio(v, base):
    if v is None or not base:
        return "-"
    return "%.2f×" % (v / base)


def reps(s):
    text = "%s/%s" % (s["reps_ok"], s["reps"])
    return text


def status_note(s):
    if s["status"] == "ok":
        return s.get("note") or ""
    return "%s: %s" % (s["status"], s.get("note") or "")


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def fanout_table(rows):
    base = next((num(s.get("deliveries_per_cpu_s")) for s in rows
                 if s["peer"] == "tidings"), None)
    body, notes = [], []
    for s in rows:
        g = {k: num(v) for k, v in s.items()}
        if s["status"] == "skipped":
            notes.append("%s: skipped (%s)" % (PEER_LABEL.get(s["peer"], s["peer"]), s["note"]))
            continue
        body.append([
            PEER_LABEL.get(s["peer"], s["peer"]),
            "%s / %s" % (f0(g.get("received")), f0(g.get("expected"))),
            f0(g.get("deliveries_per_s")),
            f0(g.get("deliveries_per_cpu_s")),
            ratio(g.get("deliveries_per_cpu_s"), base),
            f0(g.get("server_cpu_pct")),
            f2(g.get("latency_p50_ms")),
            f2(g.get("latency_p99_ms")),
            "%s / %s" % (f0(g.get("missed")), f0(g.get("duplicated"))),
            reps(s),
        ])
        if status_note(s):
            notes.append("%s: %s" % (PEER_LABEL.get(s["peer"], s["peer"]), status_note(s)))
    t = table(["peer", "delivered / expected", "deliveries/s",
               "deliveries per server CPU-s", "per CPU-s vs Tidings",
               "server CPU %", "p50 ms", "p99 ms", "missed / dup", "reps ok"],
              body) if body else "(no runs)"
    return t, notes


def idle_table(rows):
    body, notes = [], []
    for s in rows:
        g = {k: num(v) for k, v in s.items()}
        if s["status"] == "skipped":
            notes.append("%s: skipped (%s)" % (PEER_LABEL.get(s["peer"], s["peer"]), s["note"]))
            continue
        body.append([
            PEER_LABEL.get(s["peer"], s["peer"]),
            f0(g.get("connected")),
            kib(g.get("rss_per_conn_bytes")),
            kib(g.get("pss_per_conn_bytes")),
            "-" if g.get("server_rss_end_bytes") is None else f1(g["server_rss_end_bytes"] / 2**20),
            "-" if g.get("server_pss_end_bytes") is None else f1(g["server_pss_end_bytes"] / 2**20),
            f0(g.get("connect_failed")),
            reps(s),
        ])
        if status_note(s):
            notes.append("%s: %s" % (PEER_LABEL.get(s["peer"], s["peer"]), status_note(s)))
    t = table(["peer", "connected", "RSS per conn, KiB", "PSS per conn, KiB",
               "server RSS, MiB", "server PSS, MiB", "connect failed", "reps ok"],
              body) if body else "(no runs)"
    return t, notes


def storm_table(rows):
    body, notes = [], []
    for s in rows:
        g = {k: num(v) for k, v in s.items()}
        if s["status"] == "skipped":
            notes.append("%s: skipped (%s)" % (PEER_LABEL.get(s["peer"], s["peer"]), s["note"]))
            continue
        body.append([
            PEER_LABEL.get(s["peer"], s["peer"]),
            f0(g.get("connected")),
            f0(g.get("storm_reconnect_ms")),
            f0(g.get("storm_catchup_ms")),
            f0(g.get("missed")),
            f0(g.get("duplicated")),
            f2(g.get("latency_p99_ms")),
            reps(s),
        ])
        if status_note(s):
            notes.append("%s: %s" % (PEER_LABEL.get(s["peer"], s["peer"]), status_note(s)))
    t = table(["peer", "clients", "all reconnected, ms", "all caught up, ms",
               "missed", "duplicated", "p99 ms", "reps ok"],
              body) if body else "(no runs)"
    return t, notes


def history_table(by_mode):
    rows = [
        ("durable append, events/s acknowledged", "append_eps", f0),
        ("  ack p50 / p99, ms", None, None),
        ("  rows per SQLite commit", "rows_per_commit", f1),
        ("append with 1 publisher, events/s", "append_1pub_eps", f0),
        ("history API replay, events/s", "history_eps", f0),
        ("resume replay over WebSocket, events/s", "resume_eps", f0),
        ("resume latency (last replayed event), ms", "resume_latency_ms", f1),
        ("peak RSS during resume, MiB", "peak_rss_resume_mib", f1),
    ]
    modes = [m for m in ("full", "normal") if m in by_mode]
    body = []
    for label, key, f in rows:
        cells = [label.strip()]
        for m in modes:
            g = {k: num(v) for k, v in by_mode[m].items()}
            if key is None:
                cells.append("%s / %s" % (f2(g.get("append_ack_p50_ms")),
                                          f2(g.get("append_ack_p99_ms"))))
            else:
                cells.append(f(g.get(key)))
        body.append(cells)
    return table(["Tidings"] + ["durability=%s" % m for m in modes], body)


def render(out):
    meta = json.load(open(os.path.join(out, "meta.json")))
    summary = list(csv.DictReader(open(os.path.join(out, "summary.csv"))))
    v = meta.get("versions", {})
    lines = []
    kind = ("QUICK SMOKE RUN (1 repetition, smaller sizes): not figures to "
            "compare or quote" if meta.get("quick") else
            "%d repetitions per peer and scenario, medians" % meta.get("reps", 0))
    lines.append("Run `%s` (UTC), %s." % (meta.get("started_utc"), kind))
    lines.append("")
    lines.append("Machine: %s CPUs (`nproc`), %s, kernel %s, %s MiB RAM; load "
                 "average %s at the start, %s at the end; open-file limit %s. "
                 "Generator and server share the machine."
                 % (meta.get("nproc"), meta.get("cpu_model") or "?",
                    meta.get("kernel"), meta.get("mem_total_mib"),
                    " ".join(meta.get("loadavg_start", [])),
                    " ".join(meta.get("loadavg_end", [])),
                    meta.get("open_files_limit")))
    lines.append("")
    lines.append("Versions: Tidings %s (binary `%s`, built %s), nginx %s with "
                 "nchan %s, Node %s, Socket.IO %s, ws %s."
                 % (v.get("tidings"), meta.get("tidings_binary", "?"),
                    meta.get("tidings_binary_mtime_utc", "?"), v.get("nginx") or "-", v.get("nchan") or "-",
                    v.get("node") or "-", v.get("socket.io") or "-", v.get("ws") or "-"))
    lines.append("")
    scenarios = []
    for s in summary:
        if s["scenario"] not in scenarios:
            scenarios.append(s["scenario"])
    history = {}
    for scen in scenarios:
        rows = [s for s in summary if s["scenario"] == scen]
        if scen.startswith("history-"):
            history[scen.split("-", 1)[1]] = rows[0]
            continue
        first = next((s for s in rows if s["status"] != "skipped"), rows[0])
        g = {k: num(x) for k, x in first.items()}
        size = ""
        if g.get("subscribers") is not None:
            size = "%s subscribers over %s room(s)" % (f0(g["subscribers"]), f0(g.get("rooms")))
            if scen.startswith("fanout") or scen == "storm":
                size += ", %s events at %s/s" % (f0(g.get("events")), f0(g.get("rate")))
        lines.append("### %s%s" % (SCENARIO_TITLE.get(scen, scen),
                                   (" — " + size) if size else ""))
        lines.append("")
        if scen.startswith("fanout"):
            t, notes = fanout_table(rows)
        elif scen.startswith("idle"):
            t, notes = idle_table(rows)
            if not meta.get("generator", {}).get("modes"):
                notes.append("measured without the generator's idle mode: RSS "
                             "growth while connecting, divided by the "
                             "connections; no PSS figure")
        elif scen == "storm":
            t, notes = storm_table(rows)
        else:
            t, notes = fanout_table(rows)
        lines.append(t)
        lines.append("")
        for n in notes:
            lines.append("- " + n)
        if notes:
            lines.append("")
    if history:
        first = next(iter(history.values()))
        lines.append("### (vi) history (Tidings only)")
        lines.append("")
        if first.get("status") != "ok" or first.get("reps_ok") in ("0", 0):
            lines.append("history_bench.py failed: %s" % (first.get("note") or ""))
        else:
            lines.append(history_table(history))
        lines.append("")
    if os.path.exists(os.path.join(out, "chart.png")):
        lines.append("Chart: `chart.png` in the run's folder.")
        lines.append("")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    out = argv[1]
    text = render(out)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text + "\n")
    if len(argv) >= 4 and argv[2] == "--docs":
        docs = argv[3]
        rel = os.path.relpath(out, os.path.dirname(os.path.abspath(docs)))
        block = text.replace("Chart: `chart.png` in the run's folder.",
                             "![chart](%s/chart.png)" % rel)
        doc = open(docs).read()
        if BEGIN not in doc or END not in doc:
            sys.stderr.write("report.py: markers not found in %s\n" % docs)
            return 1
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(docs, "w") as f:
            f.write(head + BEGIN + "\n\n" + block + "\n" + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
