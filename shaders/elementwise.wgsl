// Elementwise kernels: unary maps, binary ops on broadcast (strided) operands, the strided
// gather behind `contiguous()`, its inverse (scatter, for concat), and fill.
//
// One thread per output element. Workgroups are laid out in a 2-D grid when there are more
// than 65,535 of them; the flat index is rebuilt from `wid.x + wid.y * num_workgroups.x`.

// Which unary op a pipeline computes (a pipeline-overridable constant, so each op is its own
// specialized pipeline). The numbering matches `UNARY_*` in crates/gpu/src/elementwise.rs.
override OP: u32 = 0u;

struct UnaryParams {
    len: u32,
    // Scalar argument: the exponent of powf, the factor of scale, the addend of add_scalar.
    arg: f32,
};

@group(0) @binding(0) var<uniform> up: UnaryParams;
@group(0) @binding(1) var<storage, read> ux: array<f32>;
@group(0) @binding(2) var<storage, read_write> uy: array<f32>;

fn flat_index(gid: vec3<u32>, wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid.x;
}

fn unary_op(x: f32) -> f32 {
    switch OP {
        case 0u: { return -x; }
        case 1u: { return exp(x); }
        case 2u: { return log(x); }
        case 3u: { return sqrt(x); }
        case 4u: { return pow(x, up.arg); }
        case 5u: { return max(x, 0.0); }
        case 6u: { return 1.0 / (1.0 + exp(-x)); }
        case 7u: { return tanh(x); }
        case 8u: { return x * up.arg; }
        case 9u: { return x + up.arg; }
        case 10u: { return select(0.0, 1.0, x > 0.0); }
        default: { return x; }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(gid, wid, nwg, lid);
    if (i >= up.len) { return; }
    uy[i] = unary_op(ux[i]);
}
