"""PyTorch counterpart of metalearn's `protonet_eval_5w1s_600ep_onnx` bench workload (our file, run by
`metalearn bench`): 600 ProtoNet evaluation episodes, 5-way 1-shot 15 queries, Conv-4 (64 filters) on
28x28x1 inputs with batch norm on running statistics, eager no-grad forward of the 80 episode images,
prototypes, squared-euclidean nearest prototype, accuracy. Same synthetic data scheme as ours (a pool of
8 random episodes, cycled). Prints one JSON line: {"workload", "threads", "ms", "episodes"}: median ms
of one 600-episode pass.

usage: python3 torch_eval.py [threads=2] [iterations=3] [warmup=1] [episodes=600]"""
import json, statistics, sys, time
import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 3
warm = int(sys.argv[3]) if len(sys.argv) > 3 else 1
episodes = int(sys.argv[4]) if len(sys.argv) > 4 else 600
torch.manual_seed(0)
torch.set_num_threads(threads)
W, K, Q = 5, 1, 15

params, cin = [], 1
for _ in range(4):
    params.append((torch.randn(64, cin, 3, 3) * 0.1, torch.zeros(64), torch.ones(64), torch.zeros(64),
                   torch.zeros(64), torch.ones(64)))  # conv w, conv b, gamma, beta, running mean, running var
    cin = 64


def embed(x):
    h = x
    for w, b, g, bb, rm, rv in params:
        h = F.conv2d(h, w, b, padding=1)
        h = F.batch_norm(h, rm, rv, g, bb, training=False)
        h = F.max_pool2d(F.relu(h), 2)
    return h.flatten(1)


pool = [torch.randn(W * (K + Q), 1, 28, 28) for _ in range(8)]
yq = torch.arange(W).repeat_interleave(Q)


def run():
    correct = 0
    with torch.no_grad():
        for e in range(episodes):
            z = embed(pool[e % len(pool)])
            protos = z[: W * K].view(W, K, -1).mean(1)
            d = torch.cdist(z[W * K:], protos) ** 2
            correct += int((d.argmin(1) == yq).sum())
    return correct


for _ in range(warm):
    run()
ts = []
for _ in range(iters):
    t = time.perf_counter()
    run()
    ts.append((time.perf_counter() - t) * 1000)
print(json.dumps({"workload": "protonet_eval_5w1s_600ep", "threads": threads, "ms": round(statistics.median(ts), 2),
                  "episodes": episodes}))
