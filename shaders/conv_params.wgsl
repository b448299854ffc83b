// The parameters of every conv2d kernel (conv2d.wgsl and conv2d_backward.wgsl), prepended to
// both by the launcher and mirrored by `ConvParams` in crates/gpu/src/conv2d.rs.
struct ConvParams {
    batch: u32, cin: u32, h: u32, w: u32,
    cout: u32, oh: u32, ow: u32, groups: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
    cin_g: u32, cout_g: u32, splits: u32, k_split: u32,
    // Elements of the weight (backward_weight, reduce_splits).
    len: u32, _pad0: u32, _pad1: u32, _pad2: u32,
};
