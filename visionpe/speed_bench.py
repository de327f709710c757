"""``visionpe bench speed``: how much visionpe's positional embeddings cost, against peers and the memory floor.

Four measurements, all in one process (except peak memory on the CPU, see below) and on the same inputs:

* **rope**: rotating ``q`` and ``k`` with visionpe's axial RoPE vs timm (``apply_rot_embed_cat``),
  diffusers (``apply_rotary_emb``), rotary-embedding-torch (``apply_rotary_emb``) and ``torch.clone``
  of ``q`` and ``k`` (one read and one write of each: the memory-bound floor of any elementwise
  rotation).  Every contender is given its tables precomputed, in its own format, and its output is
  checked against a float64 reference before it is timed.
* **tables**: building a PE's cos/sin or bias table for a new grid, first call (cache cleared) and
  cached call.
* **train**: one training step (forward, backward, AdamW) of the visionpe ViT with each PE, against
  the same ViT without a PE; every PE step is paired with a step without PE run right next to it
  (:func:`paired_timings`), and the overhead is the median of the pairs' ratios.
* **memory**: peak memory of the relative-bias families' ``attention_bias`` at large grids.  On a GPU
  it is ``torch.cuda.max_memory_allocated``; on the CPU, where PyTorch keeps no allocator
  statistics, each point runs in a fresh Linux process whose peak resident set (``VmHWM``) is reset
  just before the call and read just after.

Timings interleave the contenders: every round calls each contender once, in an order that rotates
from round to round, so a slow phase of the machine hits all of them alike.  Each entry reports the
median over rounds and the interquartile range.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .base import TableCache, grid_positions
from .rope import AxialRoPE, rope_compact_cos_sin, rope_cos_sin

__all__ = ["PRESETS", "RopeShape", "SpeedConfig", "interleaved_timings", "paired_timings", "run_speed_bench"]


@dataclass(frozen=True)
class RopeShape:
    """A ``(B, heads, N, head_dim)`` query/key shape with its token grid and per-axis rotary dims."""

    name: str
    batch: int
    heads: int
    grid: tuple[int, ...]
    dims: tuple[int, ...]

    @property
    def head_dim(self) -> int:
        return sum(self.dims)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.heads, math.prod(self.grid), self.head_dim)


@dataclass
class SpeedConfig:
    """Everything that determines the benchmark's figures (stored in results.json)."""

    rope_shapes: list[RopeShape]
    dtypes: list[str] = field(default_factory=lambda: ["float32", "bfloat16"])
    layouts: list[str] = field(default_factory=lambda: ["interleaved", "half"])
    rounds: int = 15
    compile: bool = True
    table_grid: tuple[int, ...] = (24, 24)
    table_dim: int = 768
    table_heads: int = 12
    train_size: str = "s"
    train_img: int = 224
    train_batch: int = 8
    train_rounds: int = 7
    memory_grids: list[tuple[int, int]] = field(default_factory=lambda: [(16, 16), (32, 32), (48, 48), (64, 64)])
    memory_heads: int = 12
    memory_head_dim: int = 64
    sections: list[str] = field(default_factory=lambda: list(SECTIONS))
    device: str = "cpu"


SECTIONS = ("rope", "tables", "train", "memory")

#: the issue's shapes: ViT-B (batch 32, 12 heads, 14×14 tokens, head dim 64, split 32/32) and a
#: video DiT (batch 1, 24 heads, 13×30×45 tokens, head dim 64, split 16/24/24)
FULL_SHAPES = [RopeShape("vit-b", 32, 12, (14, 14), (32, 32)),
               RopeShape("video-dit", 1, 24, (13, 30, 45), (16, 24, 24))]

PRESETS: dict[str, SpeedConfig] = {
    "full": SpeedConfig(rope_shapes=FULL_SHAPES),
    # seconds, not minutes: the same code paths on small inputs (CI, smoke tests)
    "quick": SpeedConfig(
        rope_shapes=[RopeShape("vit-b/8", 4, 12, (14, 14), (32, 32)),
                     RopeShape("video-dit/small", 1, 24, (4, 10, 15), (16, 24, 24))],
        layouts=["interleaved"], rounds=5, compile=False, table_grid=(12, 12), table_dim=192, table_heads=3,
        train_size="tiny-cpu", train_img=32, train_batch=16, train_rounds=3,
        memory_grids=[(16, 16), (24, 24)], memory_heads=4),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_timings(fns: dict[str, Callable[[], object]], rounds: int, device: torch.device,
                        warmup: int = 2, progress: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call of every function, ``rounds`` calls each, interleaved.

    Each round calls every function once; the starting function rotates from round to round.
    ``warmup`` untimed rounds come first.  ``progress()`` is called after every timed round.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
        if r >= warmup and progress is not None:
            progress()
    return times


def paired_timings(fns: dict[str, Callable[[], object]], base: str, rounds: int, device: torch.device,
                   warmup: int = 1, progress: Callable[[], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """Seconds of every function but ``base``, each call paired with a call of ``base`` next to it.

    Every round runs, for each function in turn, one call of it and one of ``base``, in an order that
    alternates from round to round.  Returns ``{name: {"times": [...], "base": [...]}}``, entry ``i`` of
    both lists from the same pair: the two calls ran seconds apart, on the same state of the machine, so
    the median of ``times[i] / base[i]`` is a steadier overhead than a ratio of medians over minutes.
    ``warmup`` untimed rounds come first; ``progress()`` is called after every timed round.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if base not in fns:
        raise ValueError(f"the baseline {base!r} is not among the functions {list(fns)}")
    others = [n for n in fns if n != base]
    out: dict[str, dict[str, list[float]]] = {n: {"times": [], "base": []} for n in others}

    def timed(fn: Callable[[], object]) -> float:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    for r in range(warmup + rounds):
        for name in others:
            if r % 2:
                t_other, t_base = timed(fns[name]), timed(fns[base])
            else:
                t_base, t_other = timed(fns[base]), timed(fns[name])
            if r >= warmup:
                out[name]["times"].append(t_other)
                out[name]["base"].append(t_base)
        if r >= warmup and progress is not None:
            progress()
    return out


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """``(p25, median, p75)`` of ``values`` (all three the value itself for one value)."""
    values = sorted(values)
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def _summary(seconds: list[float]) -> dict[str, float]:
    """Median, quartiles and minimum in milliseconds."""
    ms = sorted(1e3 * s for s in seconds)
    p25, median, p75 = _quartiles(ms)
    return {"median_ms": median, "p25_ms": p25, "p75_ms": p75, "min_ms": ms[0], "n": len(ms)}


# ---------------------------------------------------------------------------------------------- rope
def _peer_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for pkg in ("torch", "timm", "diffusers", "rotary-embedding-torch"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def _rope_contenders(q: torch.Tensor, k: torch.Tensor, shape: RopeShape, layout: str, compile_: bool,
                     notes: dict[str, str]) -> dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """name -> zero-argument function returning the rotated ``(q, k)``; peers get their own table format."""
    device = q.device
    pe = AxialRoPE(shape.heads * shape.head_dim, shape.heads, len(shape.grid), dims=shape.dims, base=10000.0,
                   layout=layout, grid=shape.grid).to(device)
    fns: dict[str, Callable] = {"visionpe": lambda: pe.rotate(q, k, shape.grid)}
    if compile_:
        compiled = torch.compile(lambda a, b: pe.rotate(a, b, shape.grid), fullgraph=True, dynamic=False)
        fns["visionpe (compiled)"] = lambda: compiled(q, k)
    positions = grid_positions(shape.grid)
    cos, sin = (t.to(device) for t in rope_cos_sin(positions, shape.dims, 10000.0, layout=layout))
    half = layout == "half"
    try:
        from timm.layers.pos_embed_sincos import apply_rot_embed_cat

        emb = torch.cat([sin, cos], dim=-1)
        fns["timm"] = lambda: (apply_rot_embed_cat(q, emb, half=half), apply_rot_embed_cat(k, emb, half=half))
    except ImportError:
        notes["timm"] = "not installed (pip install timm)"
    try:
        from diffusers.models.embeddings import apply_rotary_emb as diffusers_apply

        unbind = -2 if half else -1
        fns["diffusers"] = lambda: (diffusers_apply(q, (cos, sin), use_real_unbind_dim=unbind, sequence_dim=2),
                                    diffusers_apply(k, (cos, sin), use_real_unbind_dim=unbind, sequence_dim=2))
    except ImportError:
        notes["diffusers"] = "not installed (pip install diffusers)"
    if half:
        notes["rotary-embedding-torch"] = "has the interleaved layout only"
    else:
        try:
            from rotary_embedding_torch import apply_rotary_emb as ret_apply

            ccos, csin = rope_compact_cos_sin(positions, shape.dims, 10000.0)
            angles = torch.atan2(csin, ccos).float().repeat_interleave(2, dim=-1).to(device)
            fns["rotary-embedding-torch"] = lambda: (ret_apply(angles, q), ret_apply(angles, k))
        except ImportError:
            notes["rotary-embedding-torch"] = "not installed (pip install rotary-embedding-torch)"
    fns["clone (floor)"] = lambda: (q.clone(), k.clone())
    return fns


def _reference_rotation(x: torch.Tensor, shape: RopeShape, layout: str) -> torch.Tensor:
    """float64 rotation of ``x`` written out pair by pair (the check every contender must pass)."""
    ccos, csin = rope_compact_cos_sin(grid_positions(shape.grid), shape.dims, 10000.0)
    xd = x.double().cpu()
    if layout == "interleaved":
        a, b = xd[..., 0::2], xd[..., 1::2]
        return torch.stack([a * ccos - b * csin, b * ccos + a * csin], dim=-1).flatten(-2)
    a, b = xd.chunk(2, dim=-1)
    return torch.cat([a * ccos - b * csin, b * ccos + a * csin], dim=-1)


def profile_table(fn: Callable[[], object], device: torch.device, calls: int = 3, rows: int = 12) -> str:
    """``torch.profiler`` operator table (self time, sorted) of ``calls`` calls of ``fn``: where the time goes."""
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        recorder = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    else:  # the legacy CPU profiler: same table, without Kineto's start/stop lines on stderr
        recorder = torch.autograd.profiler.profile(use_kineto=False)
    with recorder as prof:
        for _ in range(calls):
            fn()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def bench_rope(cfg: SpeedConfig, device: torch.device,
               tick: Callable[[], None]) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """Rows ``{shape, dtype, layout, contender, median_ms, …, max_abs_err}``, notes per contender, and
    the profiler table of visionpe's apply per case."""
    rows, notes, profiles = [], {}, {}
    gen = torch.Generator().manual_seed(0)
    for shape in cfg.rope_shapes:
        q32 = torch.randn(shape.shape, generator=gen)
        k32 = torch.randn(shape.shape, generator=gen)
        for layout in cfg.layouts:
            ref_q = _reference_rotation(q32, shape, layout)
            for dtype_name in cfg.dtypes:
                dtype = getattr(torch, dtype_name)
                q, k = q32.to(device, dtype), k32.to(device, dtype)
                fns = _rope_contenders(q, k, shape, layout, cfg.compile, notes)
                errors, compile_s = {}, None
                for name, fn in list(fns.items()):
                    start = time.perf_counter()
                    try:
                        out_q, _ = fn()
                    except Exception as err:  # noqa: BLE001 - reported in the results, never hidden
                        if name != "visionpe (compiled)":
                            raise
                        notes[name] = (f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); on the CPU "
                                       f"it needs a C++ compiler (apt-get install g++), or pass --no-compile")
                        del fns[name]
                        continue
                    if name == "visionpe (compiled)":
                        compile_s = time.perf_counter() - start
                    # the floor copies without rotating: its "error" is not a correctness figure
                    errors[name] = None if name.startswith("clone") else \
                        (out_q.double().cpu() - ref_q).abs().max().item()
                    del out_q
                times = interleaved_timings(fns, cfg.rounds, device, progress=tick)
                profiles[f"{shape.name} {dtype_name} {layout}"] = profile_table(fns["visionpe"], device)
                for name, secs in times.items():
                    row = {"shape": shape.name, "qk_shape": list(shape.shape), "grid": list(shape.grid),
                           "dims": list(shape.dims), "dtype": dtype_name, "layout": layout, "contender": name,
                           **_summary(secs), "max_abs_err": errors[name]}
                    if name == "visionpe (compiled)":
                        row["compile_s"] = compile_s
                    rows.append(row)
                del q, k, fns
    return rows, notes, profiles


# -------------------------------------------------------------------------------------------- tables
def _clear_caches(pe: torch.nn.Module) -> None:
    for value in vars(pe).values():
        if isinstance(value, TableCache):
            value.clear()


#: family -> (registry name, build kwargs, table function, cacheable): the call that builds the table
#: a forward pass at a new grid needs
TABLE_CALLS: dict[str, tuple[str, dict, Callable, bool]] = {
    "rope-axial": ("rope-axial", {}, lambda pe, g, dev: pe.compact_cos_sin(g, dev), True),
    "rope-axial 3D": ("rope-axial", {"num_axes": 3}, lambda pe, g, dev: pe.compact_cos_sin(g, dev), True),
    "rope-mixed": ("rope-mixed", {}, lambda pe, g, dev: pe.angles(g), False),
    "sincos": ("sincos", {}, lambda pe, g, dev: pe.table(g, dev), True),
    "learned": ("learned", {}, lambda pe, g, dev: pe.table(g, dev), True),
    "alibi": ("alibi", {}, lambda pe, g, dev: pe.bias(g, dev, torch.float32), True),
    "rel-bias": ("rel-bias", {}, lambda pe, g, dev: pe.patch_bias(g), False),
    "cpb": ("cpb", {}, lambda pe, g, dev: pe.patch_bias(g), False),
    "rel-decomposed": ("rel-decomposed", {}, lambda pe, g, dev: pe.layer_tables(g), False),
}


#: back-to-back cached calls per round whose mean is ``repeated_ms`` in :func:`bench_tables`
REPEATED_HITS = 100


def bench_tables(cfg: SpeedConfig, device: torch.device, tick: Callable[[], None]) -> list[dict]:
    """Rows ``{pe, grid, first_ms, cached_ms, repeated_ms, repeated_over_first, cacheable}``.

    Each round clears the cache, times the first call (the build), the call right after it
    (``cached_ms``: one call of a few microseconds, timer and cold instruction caches included) and
    the mean of :data:`REPEATED_HITS` further calls (``repeated_ms``: what every layer of a running
    model pays; the target is judged on it).  A table that depends on trainable parameters
    (``cacheable`` false) is rebuilt on every call by design; its "cached" call still reuses whatever
    index or coordinate table the family caches.
    """
    from .registry import build_pe

    rows = []
    for label, (name, extra, call, cacheable) in TABLE_CALLS.items():
        num_axes = extra.get("num_axes", 2)
        grid = tuple(cfg.table_grid) if num_axes == 2 else (8, *cfg.table_grid)
        train_grid = tuple(max(1, g // 2) for g in grid)     # the table is for a new (larger) grid
        pe = build_pe(name, dim=cfg.table_dim, num_heads=cfg.table_heads, depth=1, grid=train_grid,
                      **{"num_axes": 2, **extra}).to(device)
        firsts, cached, repeated = [], [], []
        with torch.no_grad():
            for _ in range(cfg.rounds):
                _clear_caches(pe)
                _sync(device)
                start = time.perf_counter()
                call(pe, grid, device)
                _sync(device)
                firsts.append(time.perf_counter() - start)
                start = time.perf_counter()
                call(pe, grid, device)
                _sync(device)
                cached.append(time.perf_counter() - start)
                start = time.perf_counter()
                for _ in range(REPEATED_HITS):
                    call(pe, grid, device)
                _sync(device)
                repeated.append((time.perf_counter() - start) / REPEATED_HITS)
        first, hit, again = _summary(firsts), _summary(cached), _summary(repeated)
        rows.append({"pe": label, "grid": list(grid), "first_ms": first["median_ms"], "cached_ms": hit["median_ms"],
                     "repeated_ms": again["median_ms"], "repeated_over_first": again["median_ms"] / first["median_ms"],
                     "cacheable": cacheable})
        tick()
    return rows


# --------------------------------------------------------------------------------------------- train
def train_step_pes() -> list[str]:
    """The benchmark variants that are a PE (``glpe-mr`` is GLPE with a training protocol)."""
    from .bench import VARIANTS

    return [v for v in VARIANTS if v != "glpe-mr"]


def bench_train(cfg: SpeedConfig, device: torch.device, tick: Callable[[], None]) -> list[dict]:
    """Rows ``{pe, median_ms, …, overhead_pct, overhead_p25_pct, overhead_p75_pct}``: one AdamW training
    step per PE vs ``none``.  The overhead is the median (and quartiles) over :func:`paired_timings`
    pairs of ``t_pe / t_none − 1``: each PE step is compared with the ``none`` step run next to it."""
    from .bench import variant_kwargs
    from .models.sizes import VIT_SIZES
    from .models.vit import ViT

    patch, _, depth, _, _ = VIT_SIZES[cfg.train_size]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(cfg.train_batch, 3, cfg.train_img, cfg.train_img, generator=gen).to(device)
    labels = torch.randint(0, 10, (cfg.train_batch,), generator=gen).to(device)
    steps = {}
    for variant in train_step_pes():
        kwargs, _ = variant_kwargs(variant, depth, cfg.train_img, patch)
        torch.manual_seed(0)
        model = ViT(img_size=cfg.train_img, size=cfg.train_size, num_classes=10, **kwargs).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, opt=opt) -> None:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        steps[variant] = step
    pairs = paired_timings(steps, "none", cfg.train_rounds, device, warmup=2, progress=tick)
    rows = [{"pe": "none", **_summary([t for p in pairs.values() for t in p["base"]]), "overhead_pct": 0.0,
             "overhead_p25_pct": 0.0, "overhead_p75_pct": 0.0}]
    for variant, p in pairs.items():
        pct = _quartiles([100 * (t / b - 1) for t, b in zip(p["times"], p["base"])])
        rows.append({"pe": variant, **_summary(p["times"]), "overhead_pct": pct[1], "overhead_p25_pct": pct[0],
                     "overhead_p75_pct": pct[2]})
    return rows


# -------------------------------------------------------------------------------------------- memory
#: label -> (registry name, extra build arguments)
MEMORY_PES: dict[str, tuple[str, dict]] = {
    "rel-bias": ("rel-bias", {}),
    "rel-decomposed": ("rel-decomposed", {}),
    "rel-decomposed (full bias)": ("rel-decomposed", {"memory_efficient": False}),
    "cpb": ("cpb", {}),
    "alibi": ("alibi", {}),
}


def attention_inputs(pe: torch.nn.Module, q: torch.Tensor, grid: tuple[int, ...]) -> list[torch.Tensor]:
    """What ``pe`` hands to the attention kernel for ``q = k``: rotated and extended ``q``/``k`` and the bias."""
    q2, k2 = pe.rotate(q, q, grid)
    out = [q2, k2]
    bias = pe.attention_bias(q2, grid)
    if bias is not None:
        out.append(bias)
    extended = pe.extend_qk(q2, k2, grid)
    if extended is not None:
        out.extend(extended)
    return out


_MEMORY_CHILD = """
import json, math, sys, torch
from visionpe.registry import build_pe
from visionpe.speed_bench import attention_inputs


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


name, extra, grid = sys.argv[1], json.loads(sys.argv[2]), tuple(json.loads(sys.argv[3]))
heads, head_dim = int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
pe = build_pe(name, dim=heads * head_dim, num_heads=heads, depth=1, grid=grid, num_axes=len(grid), **extra)
q = torch.randn(1, heads, math.prod(grid), head_dim)
with torch.no_grad():  # a first call on a small grid pages in the code and the thread pools
    small = tuple(min(g, 2) for g in grid)
    attention_inputs(pe, torch.randn(1, heads, math.prod(small), head_dim), small)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak resident set (VmHWM) to the current one
before = status("VmRSS")
with torch.no_grad():
    kept = attention_inputs(pe, q, grid)
print(json.dumps({"peak_bytes": status("VmHWM") - before, "shapes": [list(t.shape) for t in kept]}))
"""


def _memory_point(label: str, grid: tuple[int, int], heads: int, head_dim: int, device: torch.device) -> dict:
    name, extra = MEMORY_PES[label]
    if device.type == "cuda":
        from .registry import build_pe

        pe = build_pe(name, dim=heads * head_dim, num_heads=heads, depth=1, grid=grid, **extra).to(device)
        q = torch.randn(1, heads, math.prod(grid), head_dim, device=device)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            kept = attention_inputs(pe, q, grid)
        torch.cuda.synchronize(device)
        out = {"peak_bytes": torch.cuda.max_memory_allocated(device) - base, "shapes": [list(t.shape) for t in kept]}
        del kept, q, pe
        torch.cuda.empty_cache()
        return out
    # every allocation of 64 KiB or more gets its own mapping, so freed memory is not silently reused
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, name, json.dumps(extra), json.dumps(list(grid)),
                           str(heads), str(head_dim)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        hint = ("; on the CPU the memory section reads Linux's /proc/self (VmHWM), elsewhere run it with "
                "--device cuda or leave it out with --sections" if "/proc/self" in done.stderr else "")
        raise RuntimeError(f"memory measurement of {label} at {grid} failed{hint}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(cfg: SpeedConfig, device: torch.device, tick: Callable[[], None]) -> list[dict]:
    """Rows ``{pe, grid, tokens, peak_mb, shapes, full_table_mb, decomposed_mb}`` (MB = 2^20 bytes).

    ``peak_mb`` is the peak memory of computing what the PE hands to attention
    (:func:`attention_inputs`, batch 1, float32); ``full_table_mb`` is one float32 ``(heads, N, N)``
    bias, ``decomposed_mb`` the per-axis terms ``(heads, N, H + W)`` of decomposed rel-pos.
    """
    rows = []
    for grid in cfg.memory_grids:
        n = math.prod(grid)
        for name in MEMORY_PES:
            point = _memory_point(name, tuple(grid), cfg.memory_heads, cfg.memory_head_dim, device)
            rows.append({"pe": name, "grid": list(grid), "tokens": n, "peak_mb": point["peak_bytes"] / 2**20,
                         "shapes": point["shapes"],
                         "full_table_mb": cfg.memory_heads * n * n * 4 / 2**20,
                         "decomposed_mb": cfg.memory_heads * n * sum(grid) * 4 / 2**20})
            tick()
    return rows


# ----------------------------------------------------------------------------------------------- run
def compile_graph_breaks(device: torch.device) -> dict[str, int]:
    """Graph breaks when ``torch.compile`` traces the rotate path of each rotary family (expected 0)."""
    import torch._dynamo

    from .rope_mixed import MixedRoPE

    out = {}
    for label, cls, grid in (("rope-axial 2D", AxialRoPE, (4, 4)), ("rope-axial 3D", AxialRoPE, (2, 4, 4)),
                             ("rope-mixed", MixedRoPE, (4, 4))):
        torch._dynamo.reset()
        pe = cls(dim=96, num_heads=2, num_axes=len(grid), num_prefix_tokens=1).to(device)
        q = torch.randn(2, 2, 1 + math.prod(grid), 48, device=device)
        explanation = torch._dynamo.explain(lambda a, b: pe.rotate(a, b, grid))(q, q.clone())
        out[label] = explanation.graph_break_count
    torch._dynamo.reset()
    return out


def _steps(cfg: SpeedConfig) -> int:
    total = 0
    if "rope" in cfg.sections:
        total += len(cfg.rope_shapes) * len(cfg.layouts) * len(cfg.dtypes) * cfg.rounds
    if "tables" in cfg.sections:
        total += len(TABLE_CALLS)
    if "train" in cfg.sections:
        total += cfg.train_rounds
    if "memory" in cfg.sections:
        total += len(cfg.memory_grids) * len(MEMORY_PES)
    return total


def run_speed_bench(cfg: SpeedConfig, progress: bool = True) -> dict:
    """Run the selected sections and return the ``results.json`` content (see :mod:`visionpe.speed_report`)."""
    from .bench import progress_bar

    bad = [s for s in cfg.sections if s not in SECTIONS]
    if bad or not cfg.sections:
        raise ValueError(f"unknown or no sections {bad or cfg.sections}; choose from {', '.join(SECTIONS)}")
    for d in cfg.dtypes:
        if d not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown dtype {d!r}; use float32, bfloat16 or float16")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False; use --device cpu")
    device = torch.device(cfg.device)
    result: dict = {
        "config": {**asdict(cfg), "rope_shapes": [asdict(s) for s in cfg.rope_shapes]},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "versions": _peer_versions(),
    }
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("bench speed", total=_steps(cfg))

        def tick() -> None:
            bar.advance(task)

        if "rope" in cfg.sections:
            bar.update(task, description="rope apply")
            result["rope"], result["notes"], result["profiles"] = bench_rope(cfg, device, tick)
            result["graph_breaks"] = compile_graph_breaks(device)
        if "tables" in cfg.sections:
            bar.update(task, description="table builds")
            result["tables"] = bench_tables(cfg, device, tick)
        if "train" in cfg.sections:
            bar.update(task, description="training steps")
            result["train"] = bench_train(cfg, device, tick)
        if "memory" in cfg.sections:
            bar.update(task, description="peak memory")
            result["memory"] = bench_memory(cfg, device, tick)
    return result


def preset(name: str, overrides: dict | None = None) -> SpeedConfig:
    """A copy of :data:`PRESETS` ``[name]`` with ``overrides`` (``None`` values ignored) applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = SpeedConfig(**{**asdict(PRESETS[name]), "rope_shapes": list(PRESETS[name].rope_shapes)})
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    return cfg

