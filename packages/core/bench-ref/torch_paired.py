"""Serve the workloads of torch_ref.py one at a time, for `metalearn bench --paired`.

Usage: python3 torch_paired.py TORCH_REF THREADS

Runs everything of TORCH_REF (its definitions: data, parameters, step functions, timeit, the
thread count from argv) except its final `for name, fn in [...]` loop, whose list of (name, function)
pairs it evaluates instead. Then, per stdin line `NAME ITERATIONS WARMUP`, it times that workload with
TORCH_REF's own timeit and prints one JSON line {"workload", "threads", "ms"} (or {"error"}).
The first line it prints is {"ready": true, "workloads": [...]} (or {"error"} and exit 2).
"""
import json
import sys


def fail(msg, code=2):
    print(json.dumps({"error": msg}), flush=True)
    sys.exit(code)


def main():
    if len(sys.argv) != 3:
        fail("usage: torch_paired.py TORCH_REF THREADS")
    path, threads = sys.argv[1], sys.argv[2]
    try:
        src = open(path, encoding="utf-8").read()
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    cut = src.rfind("\nfor name, fn in")
    if cut < 0:
        fail(f"{path}: no final 'for name, fn in [...]' loop to take the workloads from")
    loop = src[cut:]
    start, end = loop.find("["), loop.rfind("]:")
    if start < 0 or end < start:
        fail(f"{path}: the final loop has no [(name, function), ...] list")
    ns = {"__name__": "torch_ref", "__file__": path}
    sys.argv = [path, threads]
    exec(compile(src[:cut], path, "exec"), ns)
    if not callable(ns.get("timeit")):
        fail(f"{path}: defines no timeit(fn, n, warm)")
    workloads = dict(eval(compile(loop[start:end + 1], path, "eval"), ns))
    print(json.dumps({"ready": True, "workloads": list(workloads)}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in workloads or not parts[1].isdigit() or not parts[2].isdigit() or int(parts[1]) < 1:
            print(json.dumps({"error": f"bad request {line.strip()!r} (want NAME ITERATIONS WARMUP; names: {', '.join(workloads)})"}), flush=True)
            continue
        name, n, warm = parts[0], int(parts[1]), int(parts[2])
        ms = ns["timeit"](workloads[name], n, warm)
        print(json.dumps({"workload": name, "threads": int(threads), "ms": round(ms, 2)}), flush=True)


main()
