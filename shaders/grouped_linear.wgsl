// Column sums of a row-major [rows, cols] array: out[j] = sum over i of x[i, j]. This is the
// bias gradient of a (grouped) linear layer, db = dy summed over the batch. The launcher
// prepends invocation.wgsl.
//
// A workgroup of 16x16 threads owns 16 columns. Thread (tx, ty) sums rows ty, ty + 16,
// ty + 32, ... of column tx in order, then the 16 partial sums of each column are added in
// a fixed order from workgroup memory. No atomics, so the result is the same bits on every
// run. Neighbouring threads (tx) read neighbouring addresses, so the loads coalesce.

struct SumParams {
    rows: u32, cols: u32,
};

@group(0) @binding(0) var<uniform> p: SumParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// column_sums[ty * 16 + tx]: thread (tx, ty)'s sum.
var<workgroup> column_sums: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn column_sum(inv: Invocation) {
    let tx = inv.lid.x;
    let col = workgroup_index(inv) * 16u + tx;
    var s = 0.0;
    if (col < p.cols) {
        for (var r = inv.lid.y; r < p.rows; r += 16u) {
            s += x[r * p.cols + col];
        }
    }
    column_sums[inv.lid.y * 16u + tx] = s;
    workgroupBarrier();
    if (inv.lid.y == 0u && col < p.cols) {
        var total = 0.0;
        for (var i = 0u; i < 16u; i++) {
            total += column_sums[i * 16u + tx];
        }
        out[col] = total;
    }
}
