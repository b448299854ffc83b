// A fixed-order tree reduction across a workgroup, for the kernels that give a workgroup one
// output: each thread combines its share of the inputs, then the workgroup combines the
// threads' values pairwise in workgroup memory. The order depends only on the number of
// threads, so the result is the same bits on every run (no atomics). Prepended after
// invocation.wgsl by the launchers of the shaders that reduce.

// Threads of a reducing workgroup, a pipeline constant: 256, or 8 on a CPU adapter (where a
// workgroup's threads run 8 at a time as SIMD lanes, and each barrier switches between the
// groups of 8, so a wide workgroup spends its time switching: `Gpu::reduce_workgroup`).
override RWG: u32 = 256u;

var<workgroup> partial: array<f32, RWG>;

// The sum (or, with `is_max`, the maximum) of `v` over threads 0..threads of the workgroup,
// returned to every thread; `threads` is a power of two, at most RWG. Holds barriers: call it
// from uniform control flow. It ends with a barrier, so calls can follow one another.
fn workgroup_reduce(v: f32, lid: u32, threads: u32, is_max: bool) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = threads / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let a = partial[lid];
            let b = partial[lid + s];
            partial[lid] = select(a + b, max(a, b), is_max);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    // Every thread has read the result before the next call overwrites it.
    workgroupBarrier();
    return r;
}

// The sum of `v` over a workgroup of WG threads.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    return workgroup_reduce(v, lid, RWG, false);
}
