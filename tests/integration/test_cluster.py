"""Cluster membership and placement across three real `tidings serve`
processes on loopback (issue 5, items 1 and 5).

Short timings: 200 ms heartbeats, 1 s failure timeout. Every wait is a
bounded poll of GET /api/v1/cluster; no sleep is used to synchronise.
Detection times are printed (`detect ...`) for the record.

    /usr/bin/python3 tests/integration/test_cluster.py build/app/tidings
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
# Short timings and the bounds that go with them, shared by the cluster
# tests (DETECT_BOUND: the failure timeout, a sweep interval, the poll
# interval and slack for two shared cores; the in-process membership test
# uses the same bound).
import cluster_tools as ct  # noqa: E402
from cluster_tools import (CONVERGE_TIMEOUT, DETECT_BOUND,  # noqa: E402
                           FAILURE_TIMEOUT_MS, HEARTBEAT_MS, states)

TOKEN = h.mint_token("cluster-test")


def Node(binary, node_id, join):
    """One clustered `tidings serve` with its history in memory (the shared
    node of the cluster tests; it keeps its node id across restarts)."""
    return ct.Node(binary, node_id, join, memory=True)


def all_alive(nodes, ids):
    """True when every node lists exactly `ids`, all alive."""
    want = {i: "alive" for i in ids}
    for n in nodes:
        v = n.view()
        s = {k: st for k, st in states(v).items() if st != "dead"}
        if s != want or sorted(v["live"]) != sorted(ids):
            return False
    return True


def await_converged(nodes, ids, what):
    t0 = time.monotonic()
    h.wait_until(lambda: all_alive(nodes, ids), CONVERGE_TIMEOUT, what)
    return time.monotonic() - t0


def await_dead(observers, victim_id, t0, what):
    """Polls until every observer lists `victim_id` dead; returns seconds
    since `t0` when the last one did."""
    seen = {}

    def check_all():
        for n in observers:
            if n.id in seen:
                continue
            if states(n.view()).get(victim_id) == "dead":
                seen[n.id] = time.monotonic() - t0
        return len(seen) == len(observers)

    h.wait_until(check_all, DETECT_BOUND + 5.0, what, interval=0.02)
    return max(seen.values()), seen


# -- placement, as cluster/placement.cpp computes it (the wire contract) ----

M64 = (1 << 64) - 1


def _fnv1a(h_, data):
    for c in data:
        h_ ^= c
        h_ = (h_ * 0x100000001b3) & M64
    return h_


def _mix(z):
    z = (z + 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def weight(node, room):
    x = _fnv1a(0xcbf29ce484222325, node.encode())
    return _mix(_fnv1a(x ^ 0xff, room.encode()))


def ranked(room, members):
    return sorted(members, key=lambda m: (-weight(m, room), m))


ROOMS = ["execution:run-%04d" % i for i in range(1000)]


def placements(node, rooms, batch=100):
    out = {}
    for i in range(0, len(rooms), batch):
        q = "?" + "&".join("room=" + r for r in rooms[i:i + batch])
        for p in node.view(q)["rooms"]:
            out[p["room_id"]] = (p["owner"], p["replica"])
    h.check_eq(len(out), len(rooms), "%s: placements returned" % node.id)
    return out


def check_placement_agreement(nodes, live_ids):
    answers = [placements(n, ROOMS) for n in nodes]
    for n, a in zip(nodes[1:], answers[1:]):
        diff = [r for r in ROOMS if a[r] != answers[0][r]]
        h.check(not diff, "%s and %s disagree on %d rooms, e.g. %s: %r vs %r"
                % (nodes[0].id, n.id, len(diff), diff[:1],
                   a[diff[0]] if diff else None,
                   answers[0][diff[0]] if diff else None))
    counts = {}
    for r in ROOMS:
        owner, replica = answers[0][r]
        want = ranked(r, live_ids)
        h.check_eq((owner, replica),
                   (want[0], want[1] if len(want) > 1 else None),
                   "owner and replica of %s" % r)
        counts[owner] = counts.get(owner, 0) + 1
    # Rendezvous hashing spreads 1,000 rooms roughly evenly.
    for i in live_ids:
        h.check(counts.get(i, 0) > 1000 / len(live_ids) * 0.6,
                "%s owns only %d of 1000 rooms: %r"
                % (i, counts.get(i, 0), counts))
    return counts


# -- tests -------------------------------------------------------------------

def test_converge(ctx):
    ids = [n.id for n in ctx["nodes"]]
    dt = await_converged(ctx["nodes"], ids, "3 nodes to list 3 alive members")
    print("  converged in %.2fs after the last start" % dt)
    for n in ctx["nodes"]:
        v = n.view()
        h.check(v["enabled"] is True and v["node_id"] == n.id,
                "%s: header %r" % (n.id, v))
        me = [m for m in v["members"] if m["self"]]
        h.check(len(me) == 1 and me[0]["node_id"] == n.id
                and me[0]["address"] == n.cluster_addr,
                "%s: self entry %r" % (n.id, me))
        for m in v["members"]:
            h.check(isinstance(m["last_heard_ms"], int)
                    and m["last_heard_ms"] < 3 * FAILURE_TIMEOUT_MS
                    and isinstance(m["incarnation"], int)
                    and isinstance(m["rooms_owned"], int),
                    "%s: member entry %r" % (n.id, m))


def test_metrics(ctx):
    for n in ctx["nodes"]:
        m = h.wait_until(
            lambda: (lambda x: x if x.get("tidings_cluster_heartbeats_"
                                          "received_total", 0) > 0 else None)(
                h.metrics(n.srv)),
            5.0, "%s: heartbeats received" % n.id)
        h.check_eq(m.get("tidings_cluster_members_alive"), 3.0,
                   "%s: tidings_cluster_members_alive" % n.id)
        h.check(m.get("tidings_cluster_joins_total", 0) >= 2
                and m.get("tidings_cluster_heartbeats_sent_total", 0) > 0
                and "tidings_cluster_deaths_total" in m,
                "%s: cluster metrics %r" % (n.id, {
                    k: v for k, v in m.items() if "cluster" in k}))


def test_auth(ctx):
    n = ctx["nodes"][0]
    r = h.get(n.srv, "/api/v1/cluster")
    h.check_eq(r.status, 401, "GET /api/v1/cluster without a token")
    r = h.get(n.srv, "/api/v1/cluster", bearer=h.mint_token("x", secret="no"))
    h.check_eq(r.status, 401, "GET /api/v1/cluster with a bad token")
    r = h.http("POST", n.srv.url("/api/v1/cluster"), body="{}",
               headers={"Authorization": "Bearer " + TOKEN})
    h.check_eq(r.status, 405, "POST /api/v1/cluster")
    r = h.get(n.srv, "/api/v1/cluster?room=not-a-room", bearer=TOKEN)
    h.check_eq(r.status, 400, "an invalid room id")
    too_many = "?" + "&".join("room=execution:r%d" % i for i in range(201))
    r = h.get(n.srv, "/api/v1/cluster" + too_many, bearer=TOKEN)
    h.check_eq(r.status, 400, "201 rooms in one request")


def test_placement_agreement(ctx):
    t0 = time.monotonic()
    counts = check_placement_agreement(ctx["nodes"],
                                       [n.id for n in ctx["nodes"]])
    print("  1000 rooms, owners %r (%.2fs)" % (counts, time.monotonic() - t0))


def test_rooms_owned(ctx):
    n = ctx["nodes"][0]
    rooms = ["execution:owned-%d" % i for i in range(30)]
    for r in rooms:
        h.publish(n.srv, r, "execution_update", {"status": "running"})
    owners = {r: o for r, (o, _) in placements(n, rooms).items()}
    v = n.view()
    # Publishes to rooms owned elsewhere are forwarded to their owner: only
    # this node's own rooms have a room actor here.
    mine = sum(1 for o in owners.values() if o == n.id)
    h.check(0 < mine < len(rooms), "30 rooms all on one node: %r" % owners)
    h.check(v["rooms_local"] >= mine,
            "rooms_local %r after publishing to %d rooms it owns"
            % (v["rooms_local"], mine))
    by_member = {m["node_id"]: m["rooms_owned"] for m in v["members"]}
    h.check_eq(sum(by_member.values()), v["rooms_local"],
               "rooms_owned summed over members")
    h.check(by_member[n.id] >= mine,
            "%s owns %d of its live rooms, expected at least %d (%r)"
            % (n.id, by_member[n.id], mine, by_member))


def test_sigstop_detected_and_rejoins(ctx):
    a, b, c = ctx["nodes"]
    t0 = time.monotonic()
    os.kill(c.srv.proc.pid, signal.SIGSTOP)
    try:
        worst, seen = await_dead([a, b], c.id, t0,
                                 "%s and %s to list the stopped %s dead"
                                 % (a.id, b.id, c.id))
    finally:
        os.kill(c.srv.proc.pid, signal.SIGCONT)
    print("  detect SIGSTOP: %s" % ", ".join(
        "%s %.0f ms" % (k, v * 1000) for k, v in sorted(seen.items())))
    ctx["detect"]["sigstop"] = worst
    h.check(worst <= DETECT_BOUND,
            "SIGSTOP detected after %.2fs; bound %.2fs" % (worst, DETECT_BOUND))
    t1 = time.monotonic()
    await_converged(ctx["nodes"], [a.id, b.id, c.id],
                    "all 3 alive again after SIGCONT")
    print("  rejoined after SIGCONT in %.2fs" % (time.monotonic() - t1))
    ctx["detect"]["rejoin"] = time.monotonic() - t1
    check_placement_agreement(ctx["nodes"], [a.id, b.id, c.id])


def test_sigkill_detected(ctx):
    a, b, c = ctx["nodes"]
    t0 = time.monotonic()
    os.kill(b.srv.proc.pid, signal.SIGKILL)
    b.srv.proc.wait(5)
    worst, seen = await_dead([a, c], b.id, t0,
                             "%s and %s to list the killed %s dead"
                             % (a.id, c.id, b.id))
    print("  detect SIGKILL: %s" % ", ".join(
        "%s %.0f ms" % (k, v * 1000) for k, v in sorted(seen.items())))
    ctx["detect"]["sigkill"] = worst
    h.check(worst <= DETECT_BOUND,
            "SIGKILL detected after %.2fs; bound %.2fs" % (worst, DETECT_BOUND))
    b.srv.kill()
    # The survivors agree on placement over the two of them.
    await_converged([a, c], [a.id, c.id], "the 2 survivors to agree")
    check_placement_agreement([a, c], [a.id, c.id])
    m = h.metrics(a.srv)
    h.check(m.get("tidings_cluster_deaths_total", 0) >= 1,
            "deaths counted: %r" % m.get("tidings_cluster_deaths_total"))


def test_restart_rejoins(ctx):
    a, b, c = ctx["nodes"]
    # Same node id, new process: a new incarnation that joins through a.
    b2 = Node(ctx["binary"], b.id, [a.cluster_addr])
    ctx["nodes"][1] = b2
    ctx["runner"].servers.append(b2.srv)
    dt = await_converged(ctx["nodes"], [a.id, b.id, c.id],
                         "the restarted %s to be alive everywhere" % b.id)
    print("  restarted node alive everywhere in %.2fs" % dt)


def test_sigterm_exits(ctx):
    nodes = list(ctx["nodes"])
    while nodes:
        n = nodes.pop(0)
        t0 = time.monotonic()
        rc = n.srv.stop(timeout=5.0)
        dt = time.monotonic() - t0
        print("  %s: SIGTERM -> exit %s in %.2fs" % (n.id, rc, dt))
        h.check_eq(rc, 0, "%s exit code after SIGTERM" % n.id)
        h.check(dt < 5.0, "%s took %.2fs to exit" % (n.id, dt))
        if nodes:
            # It said goodbye: the others need not wait for the timeout.
            left, _ = await_dead(nodes, n.id, t0,
                                 "the others to see %s leave" % n.id)
            h.check(left < FAILURE_TIMEOUT_MS / 1000.0,
                    "%s's leave seen after %.2fs" % (n.id, left))


def test_cluster_off(binary):
    with h.Server(binary) as srv:
        r = h.get(srv, "/api/v1/cluster?room=execution:x", bearer=TOKEN)
        h.check_eq(r.status, 200, "GET /api/v1/cluster on a single node")
        v = r.json()
        h.check(v["enabled"] is False and v["live"] == [srv.node]
                and len(v["members"]) == 1
                and v["members"][0]["self"] is True
                and v["rooms"] == [{"room_id": "execution:x",
                                    "owner": srv.node, "replica": None}],
                "single-node reply %r" % v)
        m = h.metrics(srv)
        h.check("tidings_cluster_members_alive" not in m,
                "cluster metrics without a cluster")
        h.check_eq(srv.stop(), 0, "exit code")


def test_bad_options(binary):
    for args, words in [
            (["--join", "127.0.0.1:9"], "--join"),
            (["--cluster-listen", "nonsense"], "--cluster-listen"),
            (["--cluster-listen", "127.0.0.1:0", "--join", "x"], "--join"),
            (["--cluster-listen", "127.0.0.1:0",
              "--cluster-heartbeat-ms", "500",
              "--cluster-failure-timeout-ms", "600"], "failure timeout")]:
        r = h.run_cli(binary, "serve", "--port", "0", "--memory-store",
                      "--jwt-secret", h.SECRET, *args, timeout=20.0)
        h.check(r.returncode != 0 and words in r.stderr,
                "serve %r: expected a failure naming %r, got %d %r"
                % (args, words, r.returncode, r.stderr))


def main():
    binary = h.tidings_bin()
    runner = h.Runner("test_cluster")
    runner.run("cluster_off_single_node", test_cluster_off, binary)
    runner.run("bad_cluster_options", test_bad_options, binary)
    ctx = {"binary": binary, "runner": runner, "detect": {}, "nodes": []}
    try:
        first = Node(binary, "alpha", [])
        ctx["nodes"].append(first)
        runner.servers.append(first.srv)
        for node_id in ("bravo", "charlie"):
            n = Node(binary, node_id, [first.cluster_addr])
            ctx["nodes"].append(n)
            runner.servers.append(n.srv)
    except AssertionError as e:
        print("FAIL start_three_nodes: %s" % e, flush=True)
        runner.failures.append("start_three_nodes")
        runner.finish()
    steps = [
        ("three_nodes_converge", test_converge),
        ("cluster_metrics", test_metrics),
        ("cluster_endpoint_auth_and_input", test_auth),
        ("placement_agrees_on_1000_rooms", test_placement_agreement),
        ("rooms_owned_counts_live_rooms", test_rooms_owned),
        ("sigstop_detected_then_rejoins", test_sigstop_detected_and_rejoins),
        ("sigkill_detected", test_sigkill_detected),
        ("restarted_node_rejoins", test_restart_rejoins),
        ("sigterm_exits_promptly", test_sigterm_exits),
    ]
    for name, fn in steps:
        if not runner.run(name, fn, ctx):
            break  # later steps build on earlier ones
    if ctx["detect"]:
        print("detection: %s (failure timeout %d ms, heartbeat %d ms)"
              % (", ".join("%s %.0f ms" % (k, v * 1000)
                           for k, v in ctx["detect"].items()),
                 FAILURE_TIMEOUT_MS, HEARTBEAT_MS), flush=True)
    runner.finish()


if __name__ == "__main__":
    main()
