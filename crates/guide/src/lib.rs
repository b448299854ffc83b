//! The guide in `docs/src/` (an mdBook), run by the tests so it cannot drift from the code.
//!
//! Each chapter is included below as the documentation of an empty module, which makes every
//! ```` ```rust ```` block in it a doctest: `cargo test -p senet-guide` compiles and runs them
//! all, exercise solutions included. Lines starting with `# ` inside a block are run but hidden
//! from readers, in the book as in rustdoc. The chapters' ```` ```console ```` blocks (commands
//! and what they print) are run by `tests/guide.rs` at the root of the workspace.

/// Includes `docs/src/$file` as the documentation of module `$name`, only when doctests are
/// being collected (the crate itself is empty).
macro_rules! chapters {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            #[cfg(doctest)]
            #[doc = include_str!(concat!("../../../docs/src/", $file))]
            pub mod $name {}
        )*
        /// Every chapter file, in reading order (`tests/guide.rs` checks SUMMARY.md lists them).
        pub const CHAPTERS: &[&str] = &[$($file),*];
    };
}

chapters! {
    introduction => "introduction.md",
    tensors => "tensors.md",
    autograd => "autograd.md",
    cpu_kernel => "cpu-kernel.md",
    wgsl_kernel => "wgsl-kernel.md",
    convolution => "convolution.md",
    batch_norm => "batch-norm.md",
    senetv2_block => "senetv2-block.md",
    training => "training.md",
    gradcheck => "gradcheck.md",
    new_op => "new-op.md",
}
