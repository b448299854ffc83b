// What the conv2d kernels (conv2d.wgsl, conv2d_backward_input.wgsl, conv2d_backward_weight.wgsl)
// share: their parameters, mirrored by `ConvParams` in crates/gpu/src/conv2d.rs, the geometry
// of a window, and the column decoding of the GEMMs whose B walks N. Each launcher prepends it
// after invocation.wgsl and gemm_tile.wgsl.
//
// Output position (oh, ow) sees, through tap (ki, kj) of the kernel, the input pixel
// (oh * sh - ph + ki * dh, ow * sw - pw + kj * dw) when that lies inside the image (else a zero
// of the padding). Arrays are NCHW; a "plane" is one (sample, channel) image.

struct ConvParams {
    batch: u32, cin: u32, h: u32, w: u32,
    cout: u32, oh: u32, ow: u32, groups: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
    cin_g: u32, cout_g: u32,
    // Weight gradient: the number of K ranges, and the length of each.
    splits: u32, k_split: u32,
    // Elements of the weight.
    len: u32,
};

@group(0) @binding(0) var<uniform> p: ConvParams;

// The input coordinate seen by tap (0, 0) of output position pix (within its plane):
// (oh * sh - ph, ow * sw - pw), negative inside the padding.
fn window_origin(pix: u32) -> vec2<i32> {
    return vec2<i32>(i32((pix / p.ow) * p.sh) - i32(p.ph), i32((pix % p.ow) * p.sw) - i32(p.pw));
}

// Where tap = ki * kw + kj looks, relative to the window's origin: (ki * dh, kj * dw).
fn tap_offset(tap: u32) -> vec2<i32> {
    return vec2<i32>(i32((tap / p.kw) * p.dh), i32((tap % p.kw) * p.dw));
}

// Whether input coordinate (ih, iw) lies inside the image rather than in the padding.
fn inside(at: vec2<i32>) -> bool {
    return at.x >= 0 && at.y >= 0 && at.x < i32(p.h) && at.y < i32(p.w);
}

// The nearest coordinate inside the image (to read somewhere valid, then select 0).
fn clamp_to_image(at: vec2<i32>) -> vec2<i32> {
    return clamp(at, vec2<i32>(0), vec2<i32>(i32(p.h) - 1, i32(p.w) - 1));
}

// Offset of an input coordinate inside the image within its plane.
fn plane_offset(at: vec2<i32>) -> u32 {
    return u32(at.x) * p.w + u32(at.y);
}

// (sample, channel, position in the plane) of element idx of an NCHW array.
fn nchw(idx: u32, channels: u32, plane: u32) -> vec3<u32> {
    return vec3<u32>(idx / plane / channels, idx / plane % channels, idx % plane);
}

// ---- the GEMMs whose B slab walks N (forward and backward_input) -----------------------------

// A thread of these loads the same B column (tile column t % 64) at every step, and decodes it
// once.
struct Column {
    valid: bool,
    // The first element the column reads: of its sample and group.
    base: u32,
    // forward: the window's origin; backward_input: the pixel in padded coordinates.
    at: vec2<i32>,
};

var<private> column: Column;

// Sets column.valid and column.base for a GEMM with N = batch * plane columns that reads an
// array of `channels` channels of `read_plane` positions, `group_channels` in each group.
// Returns the column's position within its plane.
fn decode_column(plane: u32, channels: u32, group_channels: u32, read_plane: u32) -> u32 {
    let col = tile.col0 + tile.t % 64u;
    column.valid = col < p.batch * plane;
    column.base = (col / plane * channels + tile.batch * group_channels) * read_plane;
    return col % plane;
}

// The same decoding for the subgroup GEMM (gemm_subgroup.wgsl), once per column slot s of the
// thread, for group g: sets sg_ok[s] and sg_base[s] (a column past N is clamped to the last, so
// it reads somewhere valid) and returns the column's position within its plane.
var<private> sg_ok: array<bool, SG_COLS_PER_LANE>;
var<private> sg_base: array<u32, SG_COLS_PER_LANE>;

fn sg_decode_column(s: u32, col: u32, g: u32, plane: u32, channels: u32, group_channels: u32, read_plane: u32) -> u32 {
    let c = min(col, p.batch * plane - 1u);
    sg_ok[s] = col < p.batch * plane;
    sg_base[s] = (c / plane * channels + g * group_channels) * read_plane;
    return c % plane;
}

// Index of channel c of column col of such a GEMM in its NCHW output.
fn column_index(col: u32, plane: u32, channels: u32, c: u32) -> u32 {
    return (col / plane * channels + c) * plane + col % plane;
}
