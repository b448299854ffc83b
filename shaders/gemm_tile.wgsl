// The register-tiled GEMM shared by matmul.wgsl, conv2d.wgsl, conv2d_backward_input.wgsl and
// conv2d_backward_weight.wgsl (their launchers prepend it after invocation.wgsl). Each computes
// C = A @ B for a batch of products (the batch entry of a matmul, the group of a convolution)
// where A, B and C are never arrays of their own: the including shader's entry point calls
// `run_gemm`, and the shader defines how to read and write them,
//
//   fn begin_tile() -> vec2<u32>                once `tile` is known: decode what the thread
//                                               loads at every step; returns the K positions
//                                               [begin, end) to multiply over
//   fn begin_step(k0: u32)                      before the loads of the K step from k0 (to
//                                               decode once what those loads share, or nothing)
//   fn load_a(r: u32, row: u32, k: u32) -> f32  A(row, k), 0 outside A
//   fn load_b(r: u32, k: u32, col: u32) -> f32  B(k, col), 0 outside B
//   fn store_c(row: u32, col: u32, v: f32)      C(row, col) = v, only called inside C
//
// where r (0..4) numbers the thread's loads of a step, for kernels that decode per load slot.
//
// How the tiling works. A workgroup of 16x16 threads owns a 64x64 tile of C; each thread owns a
// 4x4 micro-tile of it, held in registers (`acc`). K is walked in steps of TILE_K: the
// workgroup copies a 64x16 slab of A and a 16x64 slab of B into workgroup memory (1024
// elements each, 4 per thread), waits at a barrier, and then every thread runs 16 rank-1
// updates of its micro-tile reading only workgroup memory. Each element fetched from global
// memory is thus used 64 times instead of once, which makes a GEMM compute-bound rather than
// memory-bound. While a step computes, the thread's loads for the next step are already in
// flight (into registers, written to workgroup memory after the next barrier).
//
// Rows, columns and K positions past the matrix read as 0 and are never written, so any size
// works (K = 0 gives a zero product). Workgroups form a flat list of (product, tile row, tile column).

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

// tile_a[kk * 16 + i / 4][i % 4] = A(row0 + i, k0 + kk): a thread's 4 rows are one vec4.
var<workgroup> tile_a: array<vec4<f32>, 256>;
// tile_b[kk * 16 + j / 4][j % 4] = B(k0 + kk, col0 + j): a thread's 4 columns are one vec4.
var<workgroup> tile_b: array<vec4<f32>, 256>;
// acc[r][q] = C(row0 + 4 * ty + r, col0 + 4 * tx + q).
var<private> acc: array<vec4<f32>, 4>;
// The next step's elements, loaded before the current step computes.
var<private> next_a: array<f32, 4>;
var<private> next_b: array<f32, 4>;

// The workgroup's tile and this thread's part in it.
struct Tile {
    // Which product: the batch entry, or the group (and K range) of a convolution.
    batch: u32,
    // First row and column of the tile in C.
    row0: u32,
    col0: u32,
    // The thread (0..256, lid.y * 16 + lid.x) and its micro-tile column and row.
    t: u32,
    tx: u32,
    ty: u32,
    // How the slab loads map to threads: neighbouring threads should read neighbouring
    // addresses. true: along K for A (rows of A contiguous), along N for B (rows of B
    // contiguous); false: along M for A, along K for B.
    a_along_k: bool,
    b_along_n: bool,
};

var<private> tile: Tile;

// Sets `tile` from the workgroup's place in the flat list, for `products` products with an
// m x n C each. False past the last product.
fn find_tile(inv: Invocation, m: u32, n: u32, products: u32) -> bool {
    let tiles_n = (n + TILE - 1u) / TILE;
    let per_product = tiles_n * ((m + TILE - 1u) / TILE);
    let id = workgroup_index(inv);
    tile.batch = id / per_product;
    tile.row0 = (id % per_product) / tiles_n * TILE;
    tile.col0 = id % tiles_n * TILE;
    tile.tx = inv.lid.x;
    tile.ty = inv.lid.y;
    tile.t = inv.lid.y * 16u + inv.lid.x;
    return tile.batch < products;
}

// Which element of the 64x16 A slab the thread copies on its r-th load, as (i, kk).
fn a_slot(r: u32) -> vec2<u32> {
    let t = tile.t;
    if (tile.a_along_k) {
        return vec2<u32>(t / 16u + 16u * r, t % 16u);
    }
    return vec2<u32>(t % 64u, t / 64u + 4u * r);
}

// Likewise (kk, j) for the 16x64 B slab.
fn b_slot(r: u32) -> vec2<u32> {
    let t = tile.t;
    if (tile.b_along_n) {
        return vec2<u32>(t / 64u + 4u * r, t % 64u);
    }
    return vec2<u32>(t % 16u, t / 16u + 16u * r);
}

fn load_next(k0: u32) {
    begin_step(k0);
    for (var r = 0u; r < 4u; r++) {
        let sa = a_slot(r);
        next_a[r] = load_a(r, tile.row0 + sa.x, k0 + sa.y);
        let sb = b_slot(r);
        next_b[r] = load_b(r, k0 + sb.x, tile.col0 + sb.y);
    }
}

fn store_next() {
    for (var r = 0u; r < 4u; r++) {
        let sa = a_slot(r);
        tile_a[sa.y * 16u + sa.x / 4u][sa.x % 4u] = next_a[r];
        let sb = b_slot(r);
        tile_b[sb.x * 16u + sb.y / 4u][sb.y % 4u] = next_b[r];
    }
}

// 16 rank-1 updates of the thread's 4x4 micro-tile from the slabs in workgroup memory.
fn multiply_tiles() {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let av = tile_a[kk * 16u + tile.ty];
        let bv = tile_b[kk * 16u + tile.tx];
        acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
        acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
        acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
        acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
    }
}

// The tile's part of A @ B over the K positions [k_begin, k_begin + k_len), into `acc`.
// Holds barriers: call it from uniform control flow.
fn multiply(k_begin: u32, k_len: u32) {
    acc = array<vec4<f32>, 4>();
    let steps = (k_len + TILE_K - 1u) / TILE_K;
    if (steps > 0u) {
        load_next(k_begin);
    }
    for (var s = 0u; s < steps; s++) {
        store_next();
        workgroupBarrier();
        if (s + 1u < steps) {
            load_next(k_begin + (s + 1u) * TILE_K);
        }
        multiply_tiles();
        // Nobody may overwrite the slabs while others still read them.
        workgroupBarrier();
    }
}

// Hands the thread's micro-tile to store_c, except what lies outside the m x n C.
fn store_tile(m: u32, n: u32) {
    for (var r = 0u; r < 4u; r++) {
        let row = tile.row0 + 4u * tile.ty + r;
        if (row >= m) { break; }
        for (var q = 0u; q < 4u; q++) {
            let col = tile.col0 + 4u * tile.tx + q;
            if (col >= n) { break; }
            store_c(row, col, acc[r][q]);
        }
    }
}

// The whole of a GEMM entry point, for `products` products with an m x n C each, the slab loads
// mapped to threads as `Tile` describes.
fn run_gemm(inv: Invocation, m: u32, n: u32, products: u32, a_along_k: bool, b_along_n: bool) {
    // The same answer for the whole workgroup, so returning before the barriers is allowed.
    if (!find_tile(inv, m, n, products)) { return; }
    tile.a_along_k = a_along_k;
    tile.b_along_n = b_along_n;
    let k = begin_tile();
    multiply(k.x, k.y - k.x);
    store_tile(m, n);
}
