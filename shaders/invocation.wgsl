// Which thread am I: the builtins every entry point takes, and the flat indices built from
// them. Prepended to every shader by its launcher (WGSL has no #include).
//
// A launcher asks for a flat list of workgroups; `Gpu::grid_1d` folds a list longer than the
// adapter's limit per dimension (65,535 by default) into a 2-D grid, so a kernel rebuilds its
// position in the list as `wid.x + wid.y * num_workgroups.x`.

// Threads per workgroup of the 1-D kernels (one thread per element, or a workgroup per output
// that tree-reduces in workgroup memory).
const WG: u32 = 256u;

struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
};

// Position of this workgroup in the flat list. The same for every thread of a workgroup, so a
// kernel may return on it before a barrier.
fn workgroup_index(inv: Invocation) -> u32 {
    return inv.wid.x + inv.wid.y * inv.nwg.x;
}

// Position of this thread in the flat list of threads of a 1-D kernel of WG threads per workgroup.
fn thread_index(inv: Invocation) -> u32 {
    return workgroup_index(inv) * WG + inv.lid.x;
}
