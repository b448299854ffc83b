// The register-tiled GEMM core shared by matmul.wgsl, conv2d.wgsl and conv2d_backward.wgsl
// (prepended to each by its launcher; WGSL has no #include). A 16x16 workgroup computes a
// 64x64 output tile; each thread keeps a 4x4 micro-tile in `acc` and K advances in steps of
// TILE_K through two 64x16 slabs in workgroup memory.

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

// 16 rank-1 updates of the thread's 4x4 micro-tile from the slabs in workgroup memory.
fn multiply_tiles(tx: u32, ty: u32) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let av = tile_a[kk * 16u + ty];
        let bv = tile_b[kk * 16u + tx];
        acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
        acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
        acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
        acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
    }
}
