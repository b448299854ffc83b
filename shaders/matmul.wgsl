// Tiled, strided, batched GEMM: C[g] = A[g] @ B[g] (+ bias[g]) for g in 0..batch.
//
// Every operand is a strided view into a flat array: element (g, i, j) of A lives at
// a[a_off + g * a_bs + i * a_rs + j * a_cs], and likewise for B, C and the bias. Transposes,
// column slices of wider rows (one group of a grouped linear layer) and broadcast operands
// (stride 0) are all just strides, so one kernel serves matmul, linear and grouped linear.
//
// How the tiling works. Each workgroup of 16x16 threads owns a 64x64 tile of C; each thread
// owns a 4x4 micro-tile of it, held in registers (`acc`). The K dimension is walked in steps of
// 16: the workgroup cooperatively copies a 64x16 slab of A and a 16x64 slab of B into
// workgroup (shared) memory — 1024 elements each, 4 per thread — waits at a barrier, and then
// every thread runs 16 rank-1 updates of its micro-tile reading only shared memory. Each
// element fetched from global memory is thus reused 64 times instead of once, which is what
// makes a GEMM compute-bound rather than memory-bound. While a step computes, the thread's
// global loads for the next step are already in flight (they go to registers first, and are
// written to shared memory after the next barrier).
//
// Edges: rows, columns and K positions past the matrix read as 0 and are never written, so
// any m, n, k (including k = 0, which yields zeros or the bias) works. Workgroups form a
// flat list of (batch, tile row, tile column), folded into a 2-D grid when longer than 65,535.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;

// true: add bias(g, i, j) to every output (a specialized pipeline, so no cost otherwise).
override HAS_BIAS: bool = false;

struct GemmParams {
    m: u32, n: u32, k: u32, batch: u32,
    a_off: u32, a_bs: u32, a_rs: u32, a_cs: u32,
    b_off: u32, b_bs: u32, b_rs: u32, b_cs: u32,
    c_off: u32, c_bs: u32, c_rs: u32, c_cs: u32,
    bias_off: u32, bias_bs: u32, bias_rs: u32, bias_cs: u32,
};

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bound to `a` when HAS_BIAS is false (the binding is still part of the layout).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// Which element of a 64x16 A slab thread t copies on its r-th load, as (i, kk). Neighbouring
// threads take neighbouring addresses: along K when A's rows are contiguous (a_cs == 1),
// along M otherwise (a transposed A).
fn a_slot(t: u32, r: u32) -> vec2<u32> {
    if (p.a_cs == 1u) {
        return vec2<u32>(t / 16u + 16u * r, t % 16u);
    }
    return vec2<u32>(t % 64u, t / 64u + 4u * r);
}

// Likewise (kk, j) for B's 16x64 slab: along N when B's rows are contiguous, else along K.
fn b_slot(t: u32, r: u32) -> vec2<u32> {
    if (p.b_cs == 1u) {
        return vec2<u32>(t / 64u + 4u * r, t % 64u);
    }
    return vec2<u32>(t % 16u, t / 16u + 16u * r);
}

fn load_next(g: u32, row0: u32, col0: u32, k0: u32, t: u32) {
    for (var r = 0u; r < 4u; r++) {
        let sa = a_slot(t, r);
        let row = row0 + sa.x;
        let ka = k0 + sa.y;
        var va = 0.0;
        if (row < p.m && ka < p.k) {
            va = a[p.a_off + g * p.a_bs + row * p.a_rs + ka * p.a_cs];
        }
        next_a[r] = va;
        let sb = b_slot(t, r);
        let kb = k0 + sb.x;
        let col = col0 + sb.y;
        var vb = 0.0;
        if (kb < p.k && col < p.n) {
            vb = b[p.b_off + g * p.b_bs + kb * p.b_rs + col * p.b_cs];
        }
        next_b[r] = vb;
    }
}

fn store_next(t: u32) {
    for (var r = 0u; r < 4u; r++) {
        let sa = a_slot(t, r);
        tile_a[sa.y * 16u + sa.x / 4u][sa.x % 4u] = next_a[r];
        let sb = b_slot(t, r);
        tile_b[sb.x * 16u + sb.y / 4u][sb.y % 4u] = next_b[r];
    }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let tiles_n = (p.n + TILE_N - 1u) / TILE_N;
    let tiles_m = (p.m + TILE_M - 1u) / TILE_M;
    let per_batch = tiles_n * tiles_m;
    let id = wid.x + wid.y * nwg.x;
    let g = id / per_batch;
    // Uniform per workgroup, so returning before the barriers is allowed.
    if (g >= p.batch) { return; }
    let row0 = (id % per_batch) / tiles_n * TILE_M;
    let col0 = id % tiles_n * TILE_N;
    let t = lid.y * 16u + lid.x;

    acc = array<vec4<f32>, 4>();
    let steps = (p.k + TILE_K - 1u) / TILE_K;
    if (steps > 0u) {
        load_next(g, row0, col0, 0u, t);
    }
    for (var s = 0u; s < steps; s++) {
        store_next(t);
        workgroupBarrier();
        if (s + 1u < steps) {
            load_next(g, row0, col0, (s + 1u) * TILE_K, t);
        }
        multiply_tiles(lid.x, lid.y);
        // Nobody may overwrite the slabs while others still read them.
        workgroupBarrier();
    }

    for (var r = 0u; r < 4u; r++) {
        let row = row0 + 4u * lid.y + r;
        if (row >= p.m) { break; }
        for (var q = 0u; q < 4u; q++) {
            let col = col0 + 4u * lid.x + q;
            if (col >= p.n) { break; }
            var v = acc[r][q];
            if (HAS_BIAS) {
                v += bias[p.bias_off + g * p.bias_bs + row * p.bias_rs + col * p.bias_cs];
            }
            c[p.c_off + g * p.c_bs + row * p.c_rs + col * p.c_cs] = v;
        }
    }
}
