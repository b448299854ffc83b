// Strided, batched GEMM: C[g] = A[g] @ B[g] (+ bias[g]) for g in 0..batch, on the tiled GEMM
// of gemm_tile.wgsl (which explains the tiling; this file says where A, B and C live).
//
// Every operand is a strided view into a flat array, its layout a vec4 (offset, batch stride,
// row stride, column stride): element (g, i, j) lives at offset + g * batch stride + i * row
// stride + j * column stride. Transposes, column slices of wider rows (one group of a grouped
// linear layer) and broadcast operands (stride 0) are all just strides, so one kernel serves
// matmul, linear and grouped linear.

// true: add bias(g, i, j) to every output (a specialized pipeline, so no cost otherwise).
override HAS_BIAS: bool = false;

struct GemmParams {
    m: u32, n: u32, k: u32, batch: u32,
    a: vec4<u32>,
    b: vec4<u32>,
    c: vec4<u32>,
    bias: vec4<u32>,
};

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// Bound to `a` when HAS_BIAS is false (the binding is still part of the layout).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// Index of element (i, j) of batch entry g of the view with layout l.
fn at(l: vec4<u32>, g: u32, i: u32, j: u32) -> u32 {
    return l.x + g * l.y + i * l.z + j * l.w;
}

fn begin_tile() -> vec2<u32> {
    return vec2<u32>(0u, p.k);
}

fn begin_step(k0: u32) {}

fn load_a(r: u32, row: u32, k: u32) -> f32 {
    if (row < p.m && k < p.k) {
        return a[at(p.a, tile.batch, row, k)];
    }
    return 0.0;
}

fn load_b(r: u32, k: u32, col: u32) -> f32 {
    if (k < p.k && col < p.n) {
        return b[at(p.b, tile.batch, k, col)];
    }
    return 0.0;
}

fn store_c(row: u32, col: u32, v: f32) {
    var out = v;
    if (HAS_BIAS) {
        out += bias[at(p.bias, tile.batch, row, col)];
    }
    c[at(p.c, tile.batch, row, col)] = out;
}

@compute @workgroup_size(16, 16)
fn gemm(inv: Invocation) {
    // Neighbouring threads read along the axis of stride 1 where there is one: K of A when A's
    // rows are contiguous, N of B when B's rows are.
    run_gemm(inv, p.m, p.n, p.batch, p.a.w == 1u, p.b.w == 1u);
}

// ---- the subgroup GEMM's view of the same operands (gemm_subgroup.wgsl) ----------------------

var<private> sg_batch: u32;
// Per column slot: the index of B(0, column) (the column clamped into B), and whether the
// column lies inside C.
var<private> sg_b_col: array<u32, SG_COLS_PER_LANE>;
var<private> sg_col_ok: array<bool, SG_COLS_PER_LANE>;
// Per K position: the offsets of column k of A and row k of B, so that each load adds one
// offset instead of multiplying out a strided index.
var<private> sg_a_k: u32;
var<private> sg_b_k: u32;

fn sg_dims() -> vec3<u32> {
    return vec3<u32>(p.m, p.n, p.batch);
}

fn sg_tile(product: u32) -> vec2<u32> {
    sg_batch = product;
    return vec2<u32>(0u, p.k);
}

fn sg_column(s: u32, col: u32) {
    sg_b_col[s] = at(p.b, sg_batch, 0u, min(col, p.n - 1u));
    sg_col_ok[s] = col < p.n;
}

fn sg_step(k: u32) {
    sg_a_k = at(p.a, sg_batch, 0u, k);
    sg_b_k = k * p.b.z;
}

// Loads from clamped indices and selects 0 outside the matrix: no branch around the load
// (on a CPU adapter a branch makes every load inside it test each lane).
fn sg_a(row: u32, k: u32) -> f32 {
    return select(0.0, a[sg_a_k + min(row, p.m - 1u) * p.a.z], row < p.m);
}

fn sg_b(s: u32, k: u32) -> f32 {
    return select(0.0, sg_texel(sg_b_col[s] + sg_b_k), sg_col_ok[s]);
}

fn sg_c(row: u32, s: u32, col: u32, v: f32) {
    var out = v;
    if (HAS_BIAS) {
        out += bias[at(p.bias, sg_batch, row, col)];
    }
    c[at(p.c, sg_batch, row, col)] = out;
}

// ---- the four-wide entry point's view (gemm_subgroup_vec4) -----------------------------------
//
// The launcher picks it only when A's column stride is 1, B's column stride is 1, n is a
// multiple of 4 and every offset and row and batch stride of A and B is one too, so each
// fetch reads four elements of one row. A and B are stacked in the texture: p.a and p.b are
// their layouts in that stack (p.b's offset moved past A's rows).

// Per column quad: the index of B(0, the quad's first column), the column clamped into B.
var<private> sg4_b_col: array<u32, SG_COLS_PER_LANE / 4u>;

fn sg4_column(q: u32, col: u32) {
    sg4_b_col[q] = at(p.b, sg_batch, 0u, min(col, p.n - 4u));
}

fn sg4_a(row: u32, k: u32) -> vec4<f32> {
    let v = sg4_texel(at(p.a, sg_batch, min(row, p.m - 1u), k));
    let inside = vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k);
    return select(vec4<f32>(), v, inside & vec4<bool>(row < p.m));
}

fn sg4_b(q: u32, k: u32) -> vec4<f32> {
    let v = sg4_texel(sg4_b_col[q] + min(k, p.k - 1u) * p.b.z);
    return select(vec4<f32>(), v, k < p.k);
}
