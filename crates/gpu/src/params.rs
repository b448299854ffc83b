//! Per-dispatch parameters: one Rust definition per WGSL params struct, and the test that keeps
//! the two in step.
//!
//! A kernel reads its sizes and scalars from a uniform struct declared in its shader; the
//! launcher fills that uniform with the bytes of a `#[repr(C)]` Rust struct. The two must agree
//! field for field, which the compiler cannot see. [`wgsl_params!`] declares the Rust side and,
//! for tests, records the WGSL name and every field's name, offset and WGSL type; the test at
//! the bottom parses each shader (as its launcher builds it, includes prepended) with naga, the
//! WGSL front end wgpu itself uses, and compares every uniform struct with its Rust twin.
//!
//! WGSL lays out a uniform struct of u32, f32 and `vec4` fields like `repr(C)` does, so the
//! twins are written in the same order with the same names. `[u32; 4]` mirrors a `vec4<u32>`
//! (a uniform array of scalars would need a 16-byte stride). Rust may end with fields named
//! `_pad...` that round the size up to 16 bytes; WGSL does not declare them.

/// Declares a `#[repr(C)]` params struct (Pod, so it can be uploaded as bytes) whose WGSL twin
/// has the same name and fields, and registers its layout for the naga test.
macro_rules! wgsl_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field: $ty,)*
        }

        #[cfg(test)]
        impl $crate::params::WgslParams for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [$crate::params::Field] = &[$($crate::params::Field {
                name: stringify!($field),
                offset: ::core::mem::offset_of!($name, $field),
                wgsl_type: <$ty as $crate::params::WgslType>::wgsl_type,
            },)*];
        }
    };
}

/// One field of a params struct, as its WGSL twin must declare it.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    /// Bytes from the start of the struct.
    pub offset: usize,
    /// The WGSL type the field stands for, as naga writes it (`u32`, `vec4<u32>`, ...).
    pub wgsl_type: fn() -> String,
}

/// A params struct declared with [`wgsl_params!`].
#[cfg(test)]
pub(crate) trait WgslParams: bytemuck::Pod {
    /// The struct's name, in Rust and in WGSL.
    const NAME: &'static str;
    /// Every field, in declaration order.
    const FIELDS: &'static [Field];
}

/// The WGSL type a Rust field type stands for in a uniform struct.
#[cfg(test)]
pub(crate) trait WgslType {
    /// u32 and f32, which may be the components of a vector.
    const SCALAR: bool = false;
    fn wgsl_type() -> String;
}

#[cfg(test)]
impl WgslType for u32 {
    const SCALAR: bool = true;
    fn wgsl_type() -> String {
        "u32".into()
    }
}

#[cfg(test)]
impl WgslType for f32 {
    const SCALAR: bool = true;
    fn wgsl_type() -> String {
        "f32".into()
    }
}

/// Four scalars are a `vec4`; anything else is an array.
#[cfg(test)]
impl<T: WgslType, const N: usize> WgslType for [T; N] {
    fn wgsl_type() -> String {
        if T::SCALAR && N == 4 {
            format!("vec4<{}>", T::wgsl_type())
        } else {
            format!("array<{}, {N}>", T::wgsl_type())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{WgslParams, WgslType};
    use crate::{
        batchnorm, conv2d, elementwise, grouped_linear, matmul, optim, pool, reduce, softmax,
        Shader,
    };
    use naga::common::wgsl::TypeContext;
    use std::collections::BTreeSet;

    /// What the test knows of a Rust params struct.
    struct RustParams {
        name: &'static str,
        /// (name, offset, WGSL type)
        fields: Vec<(&'static str, usize, String)>,
        size: usize,
    }

    fn rust<P: WgslParams>() -> RustParams {
        RustParams {
            name: P::NAME,
            fields: P::FIELDS
                .iter()
                .map(|f| (f.name, f.offset, (f.wgsl_type)()))
                .collect(),
            size: size_of::<P>(),
        }
    }

    /// The shader as wgpu would compile it: parsed and validated by naga.
    fn parse(name: &str, source: &str) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        // The subgroup variants need the capability a device with Features::SUBGROUP has.
        let capabilities = if name.ends_with("_subgroup") {
            naga::valid::Capabilities::default() | naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::default()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        module
    }

    /// The names of the struct types bound as uniforms.
    fn uniform_structs(module: &naga::Module) -> BTreeSet<String> {
        module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::Uniform)
            .filter_map(|(_, v)| module.types[v.ty].name.clone())
            .collect()
    }

    /// Every difference between the Rust struct and the WGSL struct of the same name. Rust's
    /// `_pad` fields have no WGSL twin; Rust may be larger than WGSL only by the trailing ones.
    fn differences(module: &naga::Module, want: &RustParams) -> Vec<String> {
        let Some((members, span)) = module.types.iter().find_map(|(_, t)| match &t.inner {
            naga::TypeInner::Struct { members, span } if t.name.as_deref() == Some(want.name) => {
                Some((members, *span as usize))
            }
            _ => None,
        }) else {
            return vec![format!("the shader declares no struct {}", want.name)];
        };
        let wgsl: Vec<(String, usize, String)> = members
            .iter()
            .map(|m| {
                let name = m.name.clone().unwrap_or_default();
                (
                    name,
                    m.offset as usize,
                    module.to_ctx().type_to_string(m.ty),
                )
            })
            .collect();
        let fields: Vec<_> = want
            .fields
            .iter()
            .filter(|(name, ..)| !name.starts_with("_pad"))
            .map(|(name, offset, ty)| (name.to_string(), *offset, ty.clone()))
            .collect();
        let mut out = Vec::new();
        if fields != wgsl {
            out.push(format!(
                "fields (name, offset, type) differ:\n  Rust {fields:?}\n  WGSL {wgsl:?}"
            ));
        }
        // Rust may be larger than WGSL only by its trailing padding.
        let padding_from = want
            .fields
            .iter()
            .rev()
            .take_while(|(name, ..)| name.starts_with("_pad"))
            .last()
            .map_or(want.size, |(_, offset, _)| *offset);
        if want.size < span || (want.size > span && padding_from > span) {
            out.push(format!(
                "size: Rust {} bytes (padding from byte {padding_from}), WGSL {span}",
                want.size
            ));
        }
        out
    }

    /// Checks one shader: it compiles, and its uniform structs are exactly `params`, each equal
    /// to its Rust twin.
    fn check(shader: &Shader, params: &[RustParams]) -> Vec<String> {
        let module = parse(shader.name, shader.source);
        let mut out = Vec::new();
        let bound = uniform_structs(&module);
        let known: BTreeSet<String> = params.iter().map(|p| p.name.to_string()).collect();
        if bound != known {
            out.push(format!(
                "{}: uniforms of types {bound:?}, Rust twins listed for {known:?}",
                shader.name
            ));
        }
        for p in params {
            for d in differences(&module, p) {
                out.push(format!("{} {}: {d}", shader.name, p.name));
            }
        }
        out
    }

    /// Every shader of the crate, with the params structs its launcher uploads.
    fn shaders() -> Vec<(Shader, Vec<RustParams>)> {
        vec![
            (batchnorm::SHADER, vec![rust::<batchnorm::BnParams>()]),
            (conv2d::SHADER, vec![rust::<conv2d::ConvParams>()]),
            (
                conv2d::BACKWARD_INPUT_SHADER,
                vec![rust::<conv2d::ConvParams>()],
            ),
            (
                conv2d::BACKWARD_WEIGHT_SHADER,
                vec![rust::<conv2d::ConvParams>()],
            ),
            (
                elementwise::SHADER,
                vec![
                    rust::<elementwise::UnaryParams>(),
                    rust::<elementwise::StridedParams>(),
                ],
            ),
            (
                grouped_linear::SHADER,
                vec![rust::<grouped_linear::SumParams>()],
            ),
            (matmul::SHADER, vec![rust::<matmul::GemmParams>()]),
            (
                matmul::subgroup_shader(),
                vec![rust::<matmul::GemmParams>()],
            ),
            (
                conv2d::subgroup_shader(&conv2d::SHADER),
                vec![rust::<conv2d::ConvParams>()],
            ),
            (
                conv2d::subgroup_shader(&conv2d::BACKWARD_INPUT_SHADER),
                vec![rust::<conv2d::ConvParams>()],
            ),
            (
                conv2d::subgroup_shader(&conv2d::BACKWARD_WEIGHT_SHADER),
                vec![rust::<conv2d::ConvParams>()],
            ),
            (
                optim::SHADER,
                vec![rust::<optim::SgdParams>(), rust::<optim::AdamParams>()],
            ),
            (pool::SHADER, vec![rust::<pool::PoolParams>()]),
            (reduce::SHADER, vec![rust::<reduce::ReduceParams>()]),
            (softmax::SHADER, vec![rust::<softmax::SoftmaxParams>()]),
        ]
    }

    #[test]
    fn every_params_struct_matches_its_wgsl_twin() {
        let problems: Vec<String> = shaders()
            .iter()
            .flat_map(|(shader, params)| check(shader, params))
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// A new shader file must reach this test through a listed shader.
    #[test]
    fn every_shader_file_is_checked() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders");
        let sources: Vec<&str> = shaders().iter().map(|(s, _)| s.source).collect();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    sources.iter().any(|s| s.contains(&text)),
                    "{} is in no shader that every_params_struct_matches_its_wgsl_twin checks",
                    path.display()
                );
            }
        }
    }

    wgsl_params! {
        struct Probe {
            view: [u32; 4],
            len: u32,
            scale: f32,
            _pad: [u32; 2],
        }
    }

    /// The comparison itself: what it must catch in a struct changed on one side only.
    #[test]
    fn a_params_struct_changed_on_one_side_is_caught() {
        let probe = rust::<Probe>();
        assert_eq!(<[[u32; 4]; 2]>::wgsl_type(), "array<vec4<u32>, 2>");
        let wgsl = |fields: &str| {
            let source = format!(
                "struct Probe {{ {fields} }};\n@group(0) @binding(0) var<uniform> p: Probe;"
            );
            differences(&parse("probe", &source), &probe)
        };
        assert_eq!(
            wgsl("view: vec4<u32>, len: u32, scale: f32"),
            Vec::<String>::new()
        );
        for changed in [
            "view: vec4<u32>, scale: f32, len: u32",
            "len: u32, scale: f32, view: vec4<u32>",
            "view: vec4<u32>, len: u32",
            "view: vec4<u32>, len: u32, scale: f32, extra: u32",
            "view: vec4<u32>, len: u32, size: f32",
            "view: vec4<u32>, len: u32, scale: u32",
            // Same fields, but WGSL needs more bytes than Rust uploads.
            "view: vec4<u32>, len: u32, @size(36) scale: f32",
        ] {
            assert!(!wgsl(changed).is_empty(), "not caught: {changed}");
        }
    }
}
