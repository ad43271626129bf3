"""DMUE's C + 1 branch copies of the last stage: one pass (grouped convolutions) vs one after another.

Prints the training-step throughput (forward + backward of the K copies on the trunk's
features, images per second) of three forms of the same module, measured side by side and
interleaved (median of the repeats):

- ``looped``: K copies run one after another (the official code's form);
- ``grouped``: ``sweeplab.models.branches.stack_copies``, one grouped convolution per layer;
- ``vmap``: the K copies' weights stacked and run with ``torch.func.vmap`` (``functional_call``).

Cases: ResNet-18's layer4 on 224-pixel images (trunk output 256 x 14 x 14), batch 72, C = 7
(K = 8), as DMUE's recipe; and the small CNN on the built-in 8 x 8 digits, batch 72, C = 10
(K = 11). ``--device cuda`` measures on a GPU. Beside the throughputs: the step's arithmetic
(``torch.utils.flop_counter``, the same for every form), the rate each form reaches in GFLOP/s, and
the rate of one large float32 matrix product on the same device, the ceiling of any arrangement of
the same arithmetic: a form near it cannot be beaten by batching, only by doing less.

    .venv/bin/python benchmarks/dmue_branches.py [--repeats 3] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from sweeplab.models import build_backbone, split_last_stage
from sweeplab.models.branches import LoopedCopies, stack_copies

CASES = {  # name -> (backbone, trunk output shape C x H x W, batch, copies)
    "resnet18 layer4, 224 px, C=7": ("resnet18", (256, 14, 14), 72, 8),
    "small_cnn last block, digits, C=10": ("small_cnn", (64, 4, 4), 72, 11),
}


class VmappedCopies(nn.Module):
    """The K copies' weights stacked (one tensor per weight), run with torch.func.vmap."""

    def __init__(self, stage: nn.Module, copies: int):
        super().__init__()
        params, buffers = stack_module_state([copy.deepcopy(stage) for _ in range(copies)])
        self.params = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v) for k, v in params.items()})
        self.stacked_buffers = {k: v for k, v in buffers.items()}
        self._template = (copy.deepcopy(stage).to("meta"),)  # the layout only (not a submodule: .to() skips it)

    def forward(self, x):
        params = {k.replace("__", "."): v for k, v in self.params.items()}

        def one(p, b, inputs):
            return functional_call(self._template[0], (p, b), (inputs,))

        out = vmap(one, in_dims=(0, 0, None))(params, self.stacked_buffers, x)  # (K, B, C, h, w)
        return out.permute(1, 0, 2, 3, 4).flatten(1, 2)


def step_seconds(module: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    out = module(x)
    out.float().square().mean().backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def step_flops(module: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one forward + backward (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        module(x).float().square().mean().backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_gflops(device: torch.device, side: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 side x side matrix product (median of the repeats)."""
    a, b = torch.randn(side, side, device=device), torch.randn(side, side, device=device)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * side**3 / statistics.median(times[1:]) / 1e9


def measure(case: str, repeats: int, device: torch.device) -> dict[str, float]:
    backbone, shape, batch, copies = CASES[case]
    _, stage = split_last_stage(build_backbone(backbone, 1, global_pool=False)[0])
    forms = {"looped": LoopedCopies(stage, copies), "grouped": stack_copies(stage, copies),
             "vmap": VmappedCopies(stage, copies)}
    for module in forms.values():
        module.to(device).train()
    if "vmap" in forms:
        forms["vmap"].stacked_buffers = {k: v.to(device) for k, v in forms["vmap"].stacked_buffers.items()}
    x = torch.randn(batch, *shape, device=device)
    flops = step_flops(forms["looped"], x)
    times: dict[str, list[float]] = {name: [] for name in forms}
    for name, module in forms.items():  # warm-up (allocations, kernel choice)
        step_seconds(module, x)
        module.zero_grad(set_to_none=True)
    for _ in range(repeats):  # interleaved, so a slower moment of a shared machine hits every form
        for name, module in forms.items():
            times[name].append(step_seconds(module, x))
            module.zero_grad(set_to_none=True)
    rates = {name: batch / statistics.median(t) for name, t in times.items()}
    return {**rates, "gflop": flops / 1e9, **{f"{n} GFLOP/s": flops / 1e9 * r / batch for n, r in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on the CPU (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"training step (forward + backward) of the K branch copies, images/s, median of {args.repeats}; {name}")
    print(f"{'case':38} {'looped':>9} {'grouped':>9} {'vmap':>9} {'grouped/looped':>15} {'vmap/looped':>12} "
          f"{'GFLOP/step':>11} {'GFLOP/s looped / grouped / vmap':>32}")
    for case in CASES:
        r = measure(case, args.repeats, device)
        achieved = " / ".join(f"{r[f'{n} GFLOP/s']:.0f}" for n in ("looped", "grouped", "vmap"))
        print(f"{case:38} {r['looped']:9.1f} {r['grouped']:9.1f} {r['vmap']:9.1f} "
              f"{r['grouped'] / r['looped']:14.2f}x {r['vmap'] / r['looped']:11.2f}x {r['gflop']:11.1f} "
              f"{achieved:>32}", flush=True)
    print(f"one {2048}x{2048} float32 matrix product on this device: {matmul_gflops(device):.0f} GFLOP/s")


if __name__ == "__main__":
    main()
