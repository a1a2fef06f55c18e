#!/usr/bin/python3
"""Replication and failover in a three-process cluster (issue 5):

sigkill_owner  a room owned by n1 with its replica on n2; three subscribers
               on each node; a publisher at a steady 100/s through n3 (not
               the owner). n1 is SIGKILLed mid-stream. The survivors must
               name n2 the owner; n2 takes over with the same epoch and
               offsets; subscribers on n2 and n3 keep their subscription;
               those on n1 reconnect to n2 or n3 with `since` = the last
               (epoch, offset) they saw. Publishing goes on; a publish that
               fails is retried with the same publish_id. Then: every
               acknowledged event reached every subscriber exactly once, in
               order, with its payload; no offset names two events; no
               publish_id was stored twice; every publish_id sent again
               gets its first offset back.
sigstop_owner  the same layout, with n1 frozen (SIGSTOP) instead: n2 and n3
               must name n2 the owner within the failure timeout plus
               slack; publishing goes on; after SIGCONT n1 rejoins and the
               room moves back to it; publishing goes on again. The same
               checks, across the three owners' terms (n1, n2, n1): history
               never forks.

Printed for the record (never asserted): `figure failover_ms ...` (the kill
to the first delivery of a new event at each resumed client), the same for
clients that stayed, the publish outage, the switch, rejoin and move-back
times.

Timings: 200 ms heartbeats, 1 s failure timeout. Every wait is a bounded
poll of a condition.

usage: /usr/bin/python3 test_cluster_failover.py <path to tidings>
"""

import asyncio
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_tools as ct  # noqa: E402
import harness as h  # noqa: E402

RATE = 100.0
PER_NODE = 3                # subscribers per node
BEFORE = 150                # acknowledged publishes before the failure
AFTER = 200                 # acknowledged after the failover, per phase
# The survivors must name the replica the owner within the failure timeout
# plus the detection slack of test_cluster.py, plus half a second for
# placement to follow the view and for the poll.
SWITCH_BOUND = ct.DETECT_BOUND + 0.5
PHASE_TIMEOUT = 15.0


def spread(nodes, per_node=PER_NODE):
    """[a, b, c, a, b, c, …]: subscribers interleaved over the nodes."""
    return [n for _ in range(per_node) for n in nodes]


def first_new(subs, t0, above):
    """ms from t0 to the first event above `above`, per subscriber."""
    out = {}
    for s in subs:
        t = ct.first_new_delivery(s, t0, above)
        out[s.name] = None if t is None else 1000 * t
    return out


def ms_stats(values):
    v = [x for x in values.values() if x is not None]
    missing = len(values) - len(v)
    if not v:
        return "none of %d clients got a new event" % len(values)
    return "first=%.0f median=%.0f max=%.0f n=%d%s" % (
        min(v), statistics.median(v), max(v), len(v),
        " (%d got none)" % missing if missing else "")


def first_ack_after(pub, t0):
    """ms from t0 to the first acknowledgement of a publish sent after
    t0 (None if none yet)."""
    ts = [r.t_ack for r in pub.records
          if r.t_send is not None and r.t_send >= t0 and r.t_ack is not None]
    return 1000 * (min(ts) - t0) if ts else None


def new_acks_since(t0):
    """A predicate for Publisher.wait_for: `n` publishes sent after t0
    were acknowledged."""
    def at_least(n):
        def pred(pub):
            return sum(1 for r in pub.records
                       if r.t_send >= t0 and r.offset is not None) >= n
        return pred
    return at_least


def kept_subscription(subs, why):
    """Problems for clients that needed more than one connection: those on
    nodes that stayed up keep their subscription (their node re-attaches
    to the new owner and fills any gap)."""
    return ["%s was on a node that stayed up (%s) but needed %d "
            "connections:\n%s" % (s.name, why, len(s.sessions), s.describe())
            for s in subs if len(s.sessions) != 1]


async def finish_and_check(cluster, subs, pub, stop, pub_task, label,
                           reverify_nodes):
    """Stops publishing, waits for every answer and every subscriber,
    runs the checker and the publish_id retries; returns problems."""
    stop.set()
    await pub_task
    await pub.drain(timeout=PHASE_TIMEOUT)
    top = pub.max_offset()
    late = await ct.caught_up(subs, top, timeout=PHASE_TIMEOUT)
    problems = ct.check_delivery(subs, pub)
    problems += ["%s did not reach offset %d:\n%s"
                 % (s.name, top, s.describe()) for s in late]
    # What each node did, for reading a failure: its takeovers and its
    # replication as an owner.
    for n in cluster.nodes:
        if n.down is None:
            m = h.metrics(n.srv)
            print("  %s %s: %s" % (label, n.id, ", ".join(
                "%s %d" % (k, m.get("tidings_" + k, 0)) for k in (
                    "cluster_takeovers_total",
                    "cluster_replication_sent_total",
                    "cluster_replication_failures_total",
                    "cluster_replicated_rows_total",
                    "cluster_forwarded_publishes_total",
                    "publish_errors_total"))), flush=True)
    print("  %s: %s; %d subscribers, %d deliveries, %d connections"
          % (label, pub.summary(), len(subs),
             sum(len(s.events) for s in subs),
             sum(len(s.sessions) for s in subs)), flush=True)
    if not problems:
        t0 = time.monotonic()
        problems += await pub.reverify(reverify_nodes)
        print("  %s: publish_ids sent again through %s in %.1fs"
              % (label, [n.id for n in reverify_nodes],
                 time.monotonic() - t0), flush=True)
    return problems


async def sigkill_owner(ctx, restart=False):
    """With `restart`, the killed owner then comes back under its id with an
    empty store: placement gives it the room again, and it must adopt the
    history its successor kept before it assigns an offset."""
    cl = ct.start_cluster(ctx["binary"], 3, runner=ctx["runner"])
    subs, pub = [], None
    try:
        a, b, c = cl.nodes
        room = ct.find_room(cl.nodes, owner=a.id, replica=b.id, tag="kill")
        subs = await ct.start_subscribers(cl, room, spread([a, b, c]),
                                          prefix="k")
        on_a = [s for s in subs if s.sessions[0].node_id == a.id]
        stayed = [s for s in subs if s not in on_a]
        pub = ct.Publisher(cl, room, via=c, rate=RATE, prefix="kill")
        stop = asyncio.Event()
        pub_task = asyncio.ensure_future(pub.run(stop=stop))
        try:
            await pub.wait_for(lambda p: len(p.by_offset) >= BEFORE,
                               PHASE_TIMEOUT, "%d acknowledged publishes "
                               "before the kill" % BEFORE)
            above = pub.max_offset()
            t_kill = time.monotonic()
            a.kill()
            print("  killed %s (owner of %s) after offset %d"
                  % (a.id, room, above), flush=True)
            switch = await cl.aawait_owner(room, b.id, nodes=[b, c],
                                           timeout=SWITCH_BOUND + 5)
            await pub.wait_for(new_acks_since(t_kill)(1), PHASE_TIMEOUT,
                               "a publish sent after the kill to be "
                               "acknowledged")
            outage = first_ack_after(pub, t_kill)
            await pub.wait_for(new_acks_since(t_kill)(AFTER), PHASE_TIMEOUT,
                               "%d publishes sent after the kill to be "
                               "acknowledged" % AFTER)
            if restart:
                back = await asyncio.get_event_loop().run_in_executor(
                    None, lambda: ct.Node(cl.binary, a.id, [b.cluster_addr],
                                          cl.memory, cl.extra))
                cl._add(back)
                t_back = time.monotonic()
                took = await cl.aawait_owner(room, a.id, nodes=[back, b, c],
                                             timeout=SWITCH_BOUND + 10)
                print("  %s restarted; owner of %s again after %.0f ms"
                      % (a.id, room, 1000 * took), flush=True)
                await pub.wait_for(new_acks_since(t_back)(AFTER),
                                   PHASE_TIMEOUT,
                                   "%d publishes sent after the restart to "
                                   "be acknowledged" % AFTER)
        except BaseException:
            stop.set()
            print("  state at the failure:\n  %s" % ct.snapshot(subs, pub),
                  flush=True)
            pub.abort()
            await pub_task
            raise
        problems = await finish_and_check(cl, subs, pub, stop, pub_task,
                                          "sigkill", [b, c])
        problems += kept_subscription(stayed, "the owner %s was killed"
                                      % a.id)
        for s in on_a:
            if not any(x.node_id != a.id and x.since is not None
                       for x in s.sessions):
                problems.append("%s never resumed on a survivor:\n%s"
                                % (s.name, s.describe()))
        resumed = first_new(on_a, t_kill, above)
        kept = first_new(stayed, t_kill, above)
        ct.figure("failover_ms", "resumed %s (SIGKILL of owner %s to the "
                  "first event above %d at each client that was on it)"
                  % (ms_stats(resumed), a.id, above))
        ct.figure("failover_ms", "stayed %s (clients on %s and %s)"
                  % (ms_stats(kept), b.id, c.id))
        ct.figure("failover_switch_ms", "%.0f (kill to %s named owner by "
                  "%s and %s)" % (1000 * switch, b.id, b.id, c.id))
        ct.figure("failover_publish_outage_ms", "%s (kill to the first "
                  "acknowledgement of a publish sent after it); ack %s"
                  % ("%.0f" % outage if outage is not None else "none",
                     ct.ms_summary(ct.ack_latencies(pub))))
        ct.assert_no_problems(problems, "sigkill_owner")
        # The survivors still agree: n2 owns the room (n1 after its restart).
        await cl.aawait_owner(room, a.id if restart else b.id, nodes=[b, c],
                              timeout=2)
    finally:
        await ct.close_all(subs)
        if pub is not None:
            pub.close()
        cl.close()


async def sigstop_owner(ctx):
    cl = ct.start_cluster(ctx["binary"], 3, runner=ctx["runner"])
    subs, pub = [], None
    try:
        a, b, c = cl.nodes
        room = ct.find_room(cl.nodes, owner=a.id, replica=b.id, tag="stop")
        subs = await ct.start_subscribers(cl, room, spread([a, b, c]),
                                          prefix="z")
        on_a = [s for s in subs if s.sessions[0].node_id == a.id]
        pub = ct.Publisher(cl, room, via=c, rate=RATE, prefix="stop")
        stop = asyncio.Event()
        pub_task = asyncio.ensure_future(pub.run(stop=stop))
        try:
            await pub.wait_for(lambda p: len(p.by_offset) >= BEFORE,
                               PHASE_TIMEOUT, "%d acknowledged publishes "
                               "before the freeze" % BEFORE)
            above = pub.max_offset()
            t_stop = time.monotonic()
            a.freeze()
            try:
                print("  froze %s (owner of %s) after offset %d"
                      % (a.id, room, above), flush=True)
                switch = await cl.aawait_owner(room, b.id, nodes=[b, c],
                                               timeout=SWITCH_BOUND + 5)
                h.check(switch <= SWITCH_BOUND,
                        "%s and %s named %s the owner %.2fs after the "
                        "SIGSTOP; bound %.2fs" % (b.id, c.id, b.id, switch,
                                                  SWITCH_BOUND))
                t_switch = time.monotonic()
                await pub.wait_for(new_acks_since(t_switch)(AFTER),
                                   PHASE_TIMEOUT,
                                   "%d publishes sent after the switch to be "
                                   "acknowledged while %s is frozen"
                                   % (AFTER, a.id))
                mid = pub.max_offset()
            finally:
                t_cont = time.monotonic()
                a.thaw()
            print("  thawed %s after offset %d" % (a.id, mid), flush=True)
            rejoin = await cl.aawait_membership(cl.ids,
                                                timeout=ct.CONVERGE_TIMEOUT)
            back = await cl.aawait_owner(room, a.id, timeout=10,
                                         replica=b.id)
            t_back = time.monotonic()
            await pub.wait_for(new_acks_since(t_back)(AFTER), PHASE_TIMEOUT,
                               "%d publishes sent after the room moved back "
                               "to %s to be acknowledged" % (AFTER, a.id))
        except BaseException:
            stop.set()
            print("  state at the failure:\n  %s" % ct.snapshot(subs, pub),
                  flush=True)
            pub.abort()
            await pub_task
            raise
        problems = await finish_and_check(cl, subs, pub, stop, pub_task,
                                          "sigstop", [a, b, c])
        problems += kept_subscription(
            [s for s in subs if s not in on_a],
            "the owner %s was frozen, then took the room back" % a.id)
        terms = {}
        for r in pub.acked():
            terms[r.node] = terms.get(r.node, 0) + 1
        ct.figure("sigstop_switch_ms", "%.0f (SIGSTOP of owner %s to %s "
                  "named owner by %s and %s; failure timeout %d ms)"
                  % (1000 * switch, a.id, b.id, b.id, c.id,
                     ct.FAILURE_TIMEOUT_MS))
        ct.figure("sigstop_rejoin_ms", "%.0f (SIGCONT to all alive "
                  "everywhere); owner back after %.0f more"
                  % (1000 * rejoin, 1000 * back))
        ct.figure("sigstop_failover_ms", "stayed %s (first event above %d "
                  "after the SIGSTOP at clients on %s and %s)"
                  % (ms_stats(first_new([s for s in subs if s not in on_a],
                                        t_stop, above)), above, b.id, c.id))
        ct.figure("sigstop_thawed_clients_ms", "%s (SIGCONT to the first "
                  "event above %d at clients that were on %s)"
                  % (ms_stats(first_new(on_a, t_cont, mid)), mid, a.id))
        ct.figure("sigstop_publish_ack_ms", "%s; acknowledged by %r"
                  % (ct.ms_summary(ct.ack_latencies(pub)), terms))
        ct.assert_no_problems(problems, "sigstop_owner")
    finally:
        await ct.close_all(subs)
        if pub is not None:
            pub.close()
        cl.close()


def main():
    binary = h.tidings_bin()
    runner = h.Runner("test_cluster_failover")
    ctx = {"binary": binary, "runner": runner}
    runner.run("sigkill_owner", sigkill_owner, ctx)
    runner.run("sigkill_owner_then_restart",
               lambda c: sigkill_owner(c, restart=True), ctx)
    runner.run("sigstop_owner", sigstop_owner, ctx)
    runner.finish()


if __name__ == "__main__":
    main()
