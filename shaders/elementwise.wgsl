// Elementwise kernels: unary maps, binary ops on broadcast (strided) operands, the strided
// gather behind `contiguous()`, its inverse (scatter, for concat), and fill. The launcher
// prepends invocation.wgsl. One thread per output element.

// Which op a pipeline computes (a pipeline-overridable constant, so each op is its own
// specialized pipeline): an op's number is its place in `UnaryOp::ALL` (or `BinaryOp::ALL`) of
// crates/spec/src/elementwise.rs, whose `apply` holds the formulas restated here.
override OP: u32 = 0u;

struct UnaryParams {
    len: u32,
    // Scalar argument: the exponent of powf, the factor of scale, the addend of add_scalar.
    arg: f32,
};

@group(0) @binding(0) var<uniform> up: UnaryParams;
@group(0) @binding(1) var<storage, read> ux: array<f32>;
@group(0) @binding(2) var<storage, read_write> uy: array<f32>;

fn unary_op(x: f32) -> f32 {
    switch OP {
        case 0u: { return -x; }                               // neg
        case 1u: { return exp(x); }                           // exp
        case 2u: { return log(x); }                           // log
        case 3u: { return sqrt(x); }                          // sqrt
        case 4u: { return pow(x, up.arg); }                   // powf
        case 5u: { return max(x, 0.0); }                      // relu
        case 6u: { return 1.0 / (1.0 + exp(-x)); }            // sigmoid
        case 7u: { return tanh(x); }                          // tanh
        case 8u: { return x * up.arg; }                       // scale
        case 9u: { return x + up.arg; }                       // add_scalar
        case 10u: { return select(0.0, 1.0, x > 0.0); }       // step
        case 11u: { return x / (1.0 + exp(-x)); }             // silu
        default: { return x; }
    }
}

@compute @workgroup_size(WG)
fn unary(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= up.len) { return; }
    uy[i] = unary_op(ux[i]);
}

// ---------------------------------------------------------------------------------------------
// Strided kernels: binary ops, gather (copy_strided), scatter and fill.
//
// A view is described right-aligned in 8 dimensions: dimensions `first..8` are real (the
// launcher merges and drops what it can, so `first` is usually 6 or 7), element `idx` of view
// `a` lives at `off_a + sum(idx[d] * stride_a[d])`. Uniform arrays need a 16-byte element
// stride, hence vec4 packing: dimension d is `shape[d / 4u][d % 4u]`. In the binary entry
// points `OP` numbers a `BinaryOp` (its place in `BinaryOp::ALL`).

struct StridedParams {
    len: u32,
    off_a: u32,
    off_b: u32,
    first: u32,
    shape: array<vec4<u32>, 2>,
    stride_a: array<vec4<u32>, 2>,
    stride_b: array<vec4<u32>, 2>,
};

@group(0) @binding(0) var<uniform> sp: StridedParams;
@group(0) @binding(1) var<storage, read> sa: array<f32>;
@group(0) @binding(2) var<storage, read> sb: array<f32>;
@group(0) @binding(3) var<storage, read_write> sout: array<f32>;

// Element offsets of flat output index `i` in views a (x) and b (y).
fn strided_offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var off = vec2<u32>(sp.off_a, sp.off_b);
    var d = 8u;
    while (d > sp.first) {
        d -= 1u;
        let n = sp.shape[d / 4u][d % 4u];
        let idx = rem % n;
        rem = rem / n;
        off += idx * vec2<u32>(sp.stride_a[d / 4u][d % 4u], sp.stride_b[d / 4u][d % 4u]);
    }
    return off;
}

fn binary_op(a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return a + b; }                            // add
        case 1u: { return a - b; }                            // sub
        case 2u: { return a * b; }                            // mul
        case 3u: { return a / b; }                            // div
        case 4u: { return select(0.0, 1.0, a == b); }         // eq
        case 5u: { return max(a, b); }                        // maximum
        case 6u: { return select(0.0, a, b > 0.0); }          // relu_grad
        default: { return a; }
    }
}

@compute @workgroup_size(WG)
fn binary(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= sp.len) { return; }
    let off = strided_offsets(i);
    sout[i] = binary_op(sa[off.x], sb[off.y]);
}

// Both operands contiguous (possibly at an offset): no index arithmetic at all.
@compute @workgroup_size(WG)
fn binary_contig(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= sp.len) { return; }
    sout[i] = binary_op(sa[sp.off_a + i], sb[sp.off_b + i]);
}

// sout (contiguous) = the view a of sa.
@compute @workgroup_size(WG)
fn gather(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= sp.len) { return; }
    sout[i] = sa[strided_offsets(i).x];
}

// The view a of sout = sa (contiguous). The launcher rejects views that repeat an element, so
// no two threads write the same place.
@compute @workgroup_size(WG)
fn scatter(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= sp.len) { return; }
    sout[strided_offsets(i).x] = sa[i];
}

// uy[..len] = arg (reuses the unary bindings: `up` and `uy`).
@compute @workgroup_size(WG)
fn fill(inv: Invocation) {
    let i = thread_index(inv);
    if (i >= up.len) { return; }
    uy[i] = up.arg;
}
