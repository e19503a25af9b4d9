#!/usr/bin/env python3
"""Splits a gateway profile by the task each sample ran in and what it was doing there.

    perf record -F 499 --call-graph dwarf,16384 -p "$(pgrep -f 'voxgate serve')" -o gw.data -- sleep 8
    perf script -i gw.data -F comm,tid,time,ip,sym > gw.txt     # with inlined frames: slow, ~30 s
    bench/cpu-split.py gw.txt

Tasks: an actor (by its type), the client's WebSocket connection (reads, writes), the HTTP/2
connection to the recogniser, tonic's request encoding, the runtime's park (epoll, timers).
Activities: the syscall a sample is in (send, recv, epoll), a context switch, other kernel,
memcpy, malloc, other user code. Prints the share of all samples per task and activity.
"""
import collections
import re
import sys


def samples(path):
    stack = None
    for line in open(path, errors="replace"):
        if not line.strip():
            if stack:
                yield stack
            stack = None
        elif not line[0].isspace():
            stack = []
        elif stack is not None:
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                stack.append(parts[1])
    if stack:
        yield stack


def task(stack):
    for frame in reversed(stack):  # from the root
        actor = re.search(r"ContextFut<voxgate_actors::[a-z_0-9:]+::([A-Za-z]+)", frame)
        if actor:
            return "actor " + actor.group(1)
        if "PipeToSendStream" in frame:
            return "HTTP/2 request body (tonic encode)"
        if "H2ClientFuture" in frame or "proto::h2::client::Conn" in frame:
            return "HTTP/2 connection"
        if "h1::dispatcher" in frame and "poll_flush" in frame:
            return "client socket: write"
        if "tokio" in frame and "park" in frame.lower():
            return "runtime: park, epoll, timers"
    if any("h1::dispatcher" in frame for frame in stack):
        return "client socket: read, frames"
    return "other"


def activity(stack):
    if any("finish_task_switch" in frame for frame in stack):
        return "kernel: context switch"
    joined = " ".join(stack)
    for syscall, name in (("__sys_sendto", "send"), ("__sys_recvfrom", "recv"),
                          ("epoll_wait", "epoll"), ("do_syscall_64", "other syscall")):
        if syscall in joined:
            return "kernel: " + name
    leaf = stack[0]
    if re.match(r"^[a-z_0-9.]+$", leaf):
        return "kernel: other"
    if "memmove" in leaf or "memcpy" in leaf:
        return "user: memcpy"
    if leaf.startswith(("_mi", "mi_")):
        return "user: malloc"
    return "user: other"


def main():
    tasks, pairs = collections.Counter(), collections.Counter()
    for stack in samples(sys.argv[1]):
        t = task(stack)
        tasks[t] += 1
        pairs[t, activity(stack)] += 1
    total = sum(tasks.values())
    print(f"{total} samples")
    for t, n in tasks.most_common():
        print(f"{100 * n / total:6.1f} %  {t}")
        for (tt, a), m in pairs.most_common():
            if tt == t and m / total >= 0.005:
                print(f"          {100 * m / total:6.1f} %  {a}")


if __name__ == "__main__":
    main()
