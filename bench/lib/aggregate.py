#!/usr/bin/python3
"""Aggregates the raw output of scripts/bench.sh (standard library only).

  aggregate.py line FILE SCENARIO PEER REP
      one human line about a run (the generator's CSV, header + one row)
  aggregate.py summarize OUT
      reads OUT/runs.tsv, the raw CSVs it names and the history_bench.py
      text; writes OUT/runs.csv (every run, one row, all generator columns),
      OUT/summary.csv (per scenario and peer: medians over the repetitions,
      worst case for the integrity counters) and OUT/chart/*.dat (matrices
      for bench/lib/chart.gp).

Generator columns are read by name from the --csv-header line, so new or
reordered columns do not break anything; a figure whose column is missing
(an older generator) is left empty.
"""

import csv
import os
import re
import statistics
import sys

PEER_ORDER = ["tidings", "tidings-normal", "nchan", "socketio", "socketio-recovery", "ws",
              "floor"]
SCENARIO_ORDER = ["fanout-1room", "fanout-rooms", "fanout-1room-half",
                  "fanout-rooms-half", "idle-10k", "idle-50k", "storm",
                  "history-full", "history-normal"]

# summary column -> how it is aggregated over repetitions
SUMMARY_COLUMNS = [
    ("subscribers", "median"),
    ("rooms", "median"),
    ("events", "median"),
    ("rate", "median"),
    ("connected", "median"),
    ("expected", "median"),
    ("received", "median"),
    ("deliveries_per_s", "median"),
    ("deliveries_per_cpu_s", "median"),
    ("server_cpu_pct", "median"),
    ("latency_p50_ms", "median"),
    ("latency_p90_ms", "median"),
    ("latency_p99_ms", "median"),
    ("latency_max_ms", "median"),
    ("ack_p50_ms", "median"),
    ("rss_per_conn_bytes", "median"),
    ("pss_per_conn_bytes", "median"),
    ("server_rss_end_bytes", "median"),
    ("server_pss_end_bytes", "median"),
    ("bench_cpu_pct", "median"),
    ("storm_reconnect_ms", "median"),
    ("storm_catchup_ms", "median"),
    ("missed", "max"),
    ("duplicated", "max"),
    ("out_of_order", "max"),
    ("misrouted", "max"),
    ("connect_failed", "max"),
    ("publish_errors", "max"),
    ("disconnected", "max"),
    ("timed_out", "any"),
    ("counted_unacked", "any"),
    # history_bench.py (history-* rows only)
    ("append_eps", "value"),
    ("append_ack_p50_ms", "value"),
    ("append_ack_p99_ms", "value"),
    ("rows_per_commit", "value"),
    ("append_1pub_eps", "value"),
    ("history_eps", "value"),
    ("resume_eps", "value"),
    ("resume_latency_ms", "value"),
    ("peak_rss_resume_mib", "value"),
]

# history_bench.py row labels -> summary columns
HISTORY_LABELS = {
    "durable append, events/s acked": "append_eps",
    "ack latency p50, ms": "append_ack_p50_ms",
    "ack latency p99, ms": "append_ack_p99_ms",
    "rows per commit (group commit)": "rows_per_commit",
    "append, 1 publisher, events/s": "append_1pub_eps",
    "history API replay, events/s": "history_eps",
    "resume replay, events/s": "resume_eps",
    "resume latency (last event), ms": "resume_latency_ms",
    "peak RSS during resume, MiB": "peak_rss_resume_mib",
}


def num(v):
    if v is None:
        return None
    v = str(v).strip()
    if v == "" or v.lower() in ("null", "nan", "none"):
        return None
    if v.lower() == "true":
        return 1.0
    if v.lower() == "false":
        return 0.0
    try:
        return float(v)
    except ValueError:
        return None


def read_run_csv(path):
    """The generator's --csv-header output: column names, then one row."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        return None
    head, vals = rows[0], rows[-1]
    return dict(zip(head, vals + [""] * (len(head) - len(vals))))


def unacked_fanout(row):
    """True when every publish was answered with a status the generator does
    not count (nchan answers 201/202; the generator counts only 200): the
    ledger then counts each delivery as "unacked" instead of "received"."""
    published = num(row.get("published")) or 0
    acked = num(row.get("acked"))
    errors = num(row.get("publish_errors")) or 0
    unacked = num(row.get("unacked_deliveries")) or 0
    return published > 0 and acked == 0 and errors == published and unacked > 0


def derived(row):
    """Figures under stable names, whichever generator version wrote row."""
    d = {}
    for k in ("subscribers", "rooms", "events", "rate", "connected",
              "expected", "received", "deliveries_per_s", "server_cpu_pct",
              "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
              "latency_max_ms", "ack_p50_ms", "bench_cpu_pct",
              "storm_reconnect_ms", "storm_catchup_ms", "missed",
              "duplicated", "out_of_order", "misrouted", "connect_failed",
              "publish_errors", "disconnected", "timed_out"):
        d[k] = num(row.get(k))
    cpu = num(row.get("server_cpu_s"))
    d["counted_unacked"] = 0
    if unacked_fanout(row):
        # Every event was published (2xx) but none counted as acknowledged:
        # count the deliveries themselves. Each event is meant for every
        # connected subscriber of its room (subscriber i is in room i % rooms).
        d["counted_unacked"] = 1
        rooms = int(d["rooms"] or 1)
        subs = int(d["connected"] or 0)
        events = int(num(row.get("published")) or 0)
        expected = 0
        for r in range(rooms):
            in_room = subs // rooms + (1 if r < subs % rooms else 0)
            ev = events // rooms + (1 if r < events % rooms else 0)
            expected += in_room * ev
        d["received"] = num(row.get("unacked_deliveries"))
        d["expected"] = float(expected)
        d["missed"] = max(0.0, d["expected"] - d["received"])
        d["publish_errors"] = 0.0
        window = num(row.get("window_s"))
        d["deliveries_per_s"] = d["received"] / window if window else None
        d["deliveries_per_cpu_s"] = d["received"] / cpu if cpu else None
        per_cpu = d["deliveries_per_cpu_s"]
    else:
        per_cpu = num(row.get("deliveries_per_server_cpu_s"))
    if per_cpu is None and cpu and d["received"] is not None:
        per_cpu = d["received"] / cpu
    d["deliveries_per_cpu_s"] = per_cpu
    rss = num(row.get("rss_per_conn_bytes"))
    if rss is None:  # generators without --mode idle
        rss = num(row.get("server_rss_per_connection"))
    d["rss_per_conn_bytes"] = rss
    d["pss_per_conn_bytes"] = num(row.get("pss_per_conn_bytes"))
    d["server_rss_end_bytes"] = num(row.get("server_rss_after_hold")) or \
        num(row.get("server_rss_end"))
    d["server_pss_end_bytes"] = num(row.get("server_pss_after_hold")) or \
        num(row.get("server_pss_end"))
    return d


def fmt(v, digits=1):
    if v is None:
        return "-"
    if abs(v) >= 100 or float(v).is_integer():
        return "%.0f" % v
    return ("%." + str(digits) + "f") % v


def cmd_line(path, scen, peer, rep):
    row = read_run_csv(path)
    if row is None:
        print("  %s / %s / rep %s: no result row" % (scen, peer, rep))
        return
    d = derived(row)
    parts = ["  %s / %s / rep %s:" % (scen, peer, rep)]
    if d["expected"]:
        parts.append("%s/%s delivered" % (fmt(d["received"]), fmt(d["expected"])))
    if d["deliveries_per_s"]:
        parts.append("%s/s" % fmt(d["deliveries_per_s"]))
    if d["latency_p50_ms"] is not None and d["expected"]:
        parts.append("p50 %s ms p99 %s ms" % (fmt(d["latency_p50_ms"], 2),
                                             fmt(d["latency_p99_ms"], 2)))
    if d["server_cpu_pct"] is not None:
        parts.append("server CPU %s%%" % fmt(d["server_cpu_pct"]))
    if d["deliveries_per_cpu_s"]:
        parts.append("%s per CPU-s" % fmt(d["deliveries_per_cpu_s"]))
    if d["rss_per_conn_bytes"] is not None:
        parts.append("RSS/conn %s B" % fmt(d["rss_per_conn_bytes"]))
    if d["pss_per_conn_bytes"] is not None:
        parts.append("PSS/conn %s B" % fmt(d["pss_per_conn_bytes"]))
    if d["storm_catchup_ms"] is not None:
        parts.append("storm catch-up %s ms" % fmt(d["storm_catchup_ms"]))
    parts.append("missed %s dup %s" % (fmt(d["missed"]), fmt(d["duplicated"])))
    if d["connect_failed"]:
        parts.append("connect failed %s" % fmt(d["connect_failed"]))
    if d["publish_errors"]:
        parts.append("publish errors %s" % fmt(d["publish_errors"]))
    if d["counted_unacked"]:
        parts.append("(publishes answered 2xx but not 200: deliveries counted "
                     "without acks)")
    elif row.get("ok", "").lower() == "false":
        parts.append("(generator: FAILED)")
    print(" ".join(parts))


def parse_history(path):
    """history_bench.py's tables: {durability: {column: median}}."""
    out = {}
    mode = None
    if not os.path.exists(path):
        return out
    for line in open(path):
        m = re.match(r"durability=(\w+)\s", line)
        if m:
            mode = m.group(1)
            out[mode] = {}
            continue
        if mode is None or not line.strip() or line.startswith("-"):
            continue
        label = line[:36].strip()
        key = HISTORY_LABELS.get(label)
        toks = line[36:].split()
        if key and toks:
            out[mode][key] = num(toks[-1])
    return out


def sort_key(scen, peer):
    si = SCENARIO_ORDER.index(scen) if scen in SCENARIO_ORDER else 99
    pi = PEER_ORDER.index(peer) if peer in PEER_ORDER else 99
    return (si, scen, pi, peer)


def cmd_summarize(out):
    runs = list(csv.DictReader(open(os.path.join(out, "runs.tsv")),
                               delimiter="\t"))
    all_rows = []
    columns = ["scenario", "peer", "rep", "status", "note"]
    groups = {}
    for r in runs:
        key = (r["scenario"], r["peer"])
        g = groups.setdefault(key, {"runs": [], "status": [], "notes": []})
        row = None
        if r["scenario"] != "history" and r["file"] and r["status"] != "skipped":
            path = os.path.join(out, r["file"])
            if os.path.exists(path):
                row = read_run_csv(path)
        if row and r["status"] == "completed-with-failures" and unacked_fanout(row):
            # nchan's 201/202 answers are the generator's only complaint;
            # derived() counts the deliveries and the missed ones itself.
            r["status"] = "ok"
            r["note"] = "publishes answered 201/202: deliveries counted without acks"
        g["status"].append(r["status"])
        if r["note"]:
            g["notes"].append(r["note"])
        if r["scenario"] == "history":
            continue
        full = {"scenario": r["scenario"], "peer": r["peer"], "rep": r["rep"],
                "status": r["status"], "note": r["note"]}
        if row:
            for k in row:
                if k not in columns:
                    columns.append(k)
            full.update(row)
            g["runs"].append(derived(row))
        all_rows.append(full)
    with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in all_rows:
            w.writerow(row)

    summary = []
    for (scen, peer), g in groups.items():
        if scen == "history":
            hist = parse_history(os.path.join(out, "raw", "history.tidings.txt"))
            status = g["status"][0] if g["status"] else "failed"
            for mode, vals in hist.items():
                s = {"scenario": "history-" + mode, "peer": peer,
                     "reps_ok": 1 if status == "ok" else 0, "reps": 1,
                     "status": status, "note": "; ".join(g["notes"])}
                s.update(vals)
                summary.append(s)
            if not hist:
                summary.append({"scenario": "history-full", "peer": peer,
                                "reps_ok": 0, "reps": 1, "status": status,
                                "note": "; ".join(g["notes"]) or "no output"})
            continue
        ok = sum(1 for st in g["status"] if st == "ok")
        skipped = all(st == "skipped" for st in g["status"])
        s = {"scenario": scen, "peer": peer, "reps_ok": ok,
             "reps": len(g["status"]),
             "status": "skipped" if skipped else
                       ("ok" if ok == len(g["status"]) else "partial" if g["runs"] else "failed"),
             "note": "; ".join(sorted(set(g["notes"]))) if (skipped or ok < len(g["status"])) else
                     "; ".join(sorted(set(n for n in g["notes"] if "201/202" in n)))}
        for col, how in SUMMARY_COLUMNS:
            vals = [d[col] for d in g["runs"] if d.get(col) is not None]
            if not vals:
                continue
            if how == "median":
                s[col] = statistics.median(vals)
            elif how == "max":
                s[col] = max(vals)
            elif how == "any":
                s[col] = 1 if any(vals) else 0
        summary.append(s)
    summary.sort(key=lambda s: sort_key(s["scenario"], s["peer"]))
    fields = ["scenario", "peer", "status", "reps_ok", "reps"] + \
        [c for c, _ in SUMMARY_COLUMNS] + ["note"]
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for s in summary:
            w.writerow({k: (("%.6g" % v) if isinstance(v, float) else v)
                        for k, v in s.items()})
    write_chart_data(out, summary)


def write_chart_data(out, summary):
    """Scenario x peer matrices, one file per figure, '?' where missing, and
    flags.gp telling chart.gp which of them hold any figure."""
    d = os.path.join(out, "chart")
    os.makedirs(d, exist_ok=True)
    flags = []
    peers = [p for p in PEER_ORDER if any(s["peer"] == p for s in summary)]
    figures = {
        "deliveries_per_s": ("fanout", 1),
        "deliveries_per_cpu_s": ("fanout", 1),
        "latency_p50_ms": ("fanout", 1),
        "latency_p99_ms": ("fanout", 1),
        "rss_per_conn_bytes": ("idle", 1 / 1024.0),  # KiB
        "pss_per_conn_bytes": ("idle", 1 / 1024.0),
    }
    for fig, (prefix, scale) in figures.items():
        scens = [sc for sc in SCENARIO_ORDER if sc.startswith(prefix) and
                 any(s["scenario"] == sc for s in summary)]
        any_value = False
        with open(os.path.join(d, fig + ".dat"), "w") as f:
            f.write("scenario " + " ".join(peers) + "\n")
            for sc in scens:
                vals = []
                for p in peers:
                    s = next((s for s in summary if s["scenario"] == sc and
                              s["peer"] == p), None)
                    v = s.get(fig) if s else None
                    vals.append("?" if v is None else "%.6g" % (v * scale))
                    any_value = any_value or v is not None
                f.write(sc + " " + " ".join(vals) + "\n")
        flags.append("has_%s = %d" % (fig, 1 if any_value else 0))
    with open(os.path.join(d, "flags.gp"), "w") as f:
        f.write("\n".join(flags) + "\n")


def main(argv):
    if len(argv) >= 6 and argv[1] == "line":
        cmd_line(*argv[2:6])
    elif len(argv) == 3 and argv[1] == "summarize":
        cmd_summarize(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
