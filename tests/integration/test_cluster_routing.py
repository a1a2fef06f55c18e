#!/usr/bin/python3
"""Cross-node routing in a three-process cluster (issue 5: a client may
connect to any node, a publish may go to any node):

cross_node_routing        a room owned by n3; subscribers on n1; a
                          publisher on n2 (a non-owner, which forwards to
                          n3 and answers with n3's acknowledgement). Every
                          publish is acknowledged with an offset and every
                          subscriber gets every event exactly once, in
                          order (offsets dense), with the acknowledged
                          payload, in the owner's epoch.
publish_through_any_node  subscribers on every node; publishes take turns
                          through n1, n2 and n3: one stream, one epoch.
                          Then each publish_id is sent again through another
                          node and gets its first offset back.
single_node_path          the same run as the first, with the room owned by
                          n1 and subscribers and publisher on n1: the path
                          without forwarding, for comparison.
operations_across_nodes   an operation created through each node; its events
                          posted through every node get dense offsets, and
                          every node reads its state. Afterwards each node
                          still stores: a publish to a room owned by each
                          node, through each node, is acknowledged. (Copying
                          an operation record to the other nodes once
                          stopped their history writers.)

Printed for the record (never asserted): `figure latency_ms ...` end to end
(publish request sent -> event received) and `figure ack_ms ...` for the
cross-node and the single-node path.

usage: /usr/bin/python3 test_cluster_routing.py <path to tidings>
"""

import json
import os
import sys
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_tools as ct  # noqa: E402
import harness as h  # noqa: E402

EVENTS = 300
RATE = 100.0
SUBSCRIBERS = 5


async def one_path(cluster, room, sub_nodes, via, label, events=EVENTS,
                   rate=RATE):
    """Subscribes, publishes `events` at `rate`, checks delivery; returns
    (end-to-end latencies, ack latencies) in seconds."""
    subs = await ct.start_subscribers(cluster, room, sub_nodes,
                                      prefix=label + "-")
    pub = ct.Publisher(cluster, room, via=via, rate=rate, prefix=label)
    try:
        await pub.run(count=events)
        await pub.drain(timeout=20)
        late = []
        if not pub.check_acks():
            late = await ct.caught_up(subs, pub.max_offset(), timeout=15)
        problems = ct.check_delivery(subs, pub)
        problems += ["%s did not catch up:\n%s" % (s.name, s.describe())
                     for s in late]
        # Without failures nothing may be retried, moved or closed.
        vias = via if isinstance(via, list) else [via]
        for r in pub.records:
            if r.attempts:
                problems.append("publish %s needed %d retries without any "
                                "failure: %s" % (r.pid, len(r.attempts),
                                                 r.attempts[:2]))
                break
        for r in pub.acked():
            if r.node not in [n.id for n in vias]:
                problems.append("publish %s was acknowledged by %s, not "
                                "through %s" % (r.pid, r.node,
                                                [n.id for n in vias]))
                break
        for s in subs:
            if len(s.sessions) != 1:
                problems.append("%s needed %d connections without any "
                                "failure:\n%s" % (s.name, len(s.sessions),
                                                  s.describe()))
        print("  %s: %s; %d subscribers on %s, %d deliveries"
              % (label, pub.summary(), len(subs),
                 sorted({n.id for n in sub_nodes}),
                 sum(len(s.events) for s in subs)), flush=True)
        ct.assert_no_problems(problems, label)
        return ct.latencies(subs, pub), ct.ack_latencies(pub), pub
    finally:
        await ct.close_all(subs)
        pub.close()


async def cross_node_routing(ctx):
    cl = ctx["cluster"]
    n1, n2, n3 = cl.nodes
    room = ct.find_room(cl.nodes, owner=n3.id, tag="route")
    e2e, ack, _ = await one_path(cl, room, [n1] * SUBSCRIBERS, n2,
                                 "cross")
    ctx["figures"]["cross_node"] = (e2e, ack, "publish via %s, owner %s, %d "
                                    "subscribers on %s"
                                    % (n2.id, n3.id, SUBSCRIBERS, n1.id))


async def publish_through_any_node(ctx):
    cl = ctx["cluster"]
    n1, n2, n3 = cl.nodes
    room = ct.find_room(cl.nodes, owner=n3.id, tag="any")
    _, _, pub = await one_path(cl, room, [n1, n2, n3] * 2, [n1, n2, n3],
                               "any", events=90, rate=60.0)
    # A retried publish_id gets its first offset back, through any node.
    problems = []
    for i, n in enumerate(cl.nodes):
        others = [m for m in cl.nodes if m is not n]
        mine = [r for r in pub.acked() if r.node == n.id]
        problems += await pub.reverify(others[i % 2:] + others[:i % 2],
                                       records=mine)
    ct.assert_no_problems(problems, "publish_id retried through another node")


async def single_node_path(ctx):
    cl = ctx["cluster"]
    n1 = cl.nodes[0]
    room = ct.find_room(cl.nodes, owner=n1.id, tag="local")
    e2e, ack, _ = await one_path(cl, room, [n1] * SUBSCRIBERS, n1, "local")
    ctx["figures"]["single_node"] = (e2e, ack, "publish via %s, owner %s, "
                                     "%d subscribers on %s"
                                     % (n1.id, n1.id, SUBSCRIBERS, n1.id))


async def operations_across_nodes(ctx):
    cl = ctx["cluster"]
    key = {"Authorization": "Bearer " + h.API_KEY}

    def call(node, method, path, body=None):
        r = h.http(method, node.srv.url(path), body=body, headers=key)
        try:
            return r.status, json.loads(r.body)
        except ValueError:
            return r.status, r.body

    tag = uuid.uuid4().hex[:8]
    for i, creator in enumerate(cl.nodes):
        op = "op-%s-%d" % (tag, i)
        st, body = call(creator, "POST", "/api/v1/operations",
                        {"id": op, "kind": "job", "owner": "alice"})
        h.check(st == 201, "create %s through %s: %s %r"
                % (op, creator.id, st, body))
        for k, n in enumerate(cl.nodes):
            st, body = call(n, "POST", "/api/v1/operations/%s/events" % op,
                            {"type": "progress",
                             "data": {"percent": 10 * (k + 1)}})
            h.check(st == 200 and body.get("offset") == k + 1,
                    "event %d of %s through %s: %s %r"
                    % (k + 1, op, n.id, st, body))
        for n in cl.nodes:
            st, body = call(n, "GET", "/api/v1/operations/%s" % op)
            h.check(st == 200 and body.get("offset") == len(cl.nodes),
                    "state of %s through %s: %s %r" % (op, n.id, st, body))
    for owner in cl.nodes:
        room = ct.find_room(cl.nodes, owner=owner.id, tag="after-op")
        for n in cl.nodes:
            st, body = call(n, "POST", "/api/v1/publish",
                            {"room_id": room, "type": "t", "data": n.id})
            h.check(st == 200, "publish to %s (owner %s) through %s after "
                    "the operations: %s %r" % (room, owner.id, n.id, st,
                                               body))


def main():
    binary = h.tidings_bin()
    runner = h.Runner("test_cluster_routing")
    try:
        cluster = ct.start_cluster(binary, 3, runner=runner)
    except AssertionError as e:
        print("FAIL start_cluster: %s" % e, flush=True)
        runner.failures.append("start_cluster")
        runner.finish()
    ctx = {"cluster": cluster, "figures": {}}
    try:
        runner.run("cross_node_routing", cross_node_routing, ctx)
        runner.run("publish_through_any_node", publish_through_any_node, ctx)
        runner.run("single_node_path", single_node_path, ctx)
        runner.run("operations_across_nodes", operations_across_nodes, ctx)
        for n in cluster.nodes:
            if not n.srv.alive():
                runner.failures.append("%s_alive" % n.id)
                print("FAIL %s_alive: exited with %s during the tests"
                      % (n.id, n.srv.proc.returncode), flush=True)
    finally:
        cluster.close()
    for path in ("cross_node", "single_node"):
        if path in ctx["figures"]:
            e2e, ack, what = ctx["figures"][path]
            ct.figure("latency_ms", "%s %s (%d events at %.0f/s; %s)"
                      % (path, ct.ms_summary(e2e), EVENTS, RATE, what))
            ct.figure("ack_ms", "%s %s" % (path, ct.ms_summary(ack)))
    runner.finish()


if __name__ == "__main__":
    main()
