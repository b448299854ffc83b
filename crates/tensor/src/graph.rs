//! A plain description of the autograd graph behind a tensor, made for looking at: which ops
//! ran, in which order, what each op keeps for its backward pass and how many bytes that is,
//! and a [Graphviz](https://graphviz.org) DOT rendering of it all (`senet graph` writes one
//! for a whole training step).
//!
//! The graph itself is nothing but the [`Op`]s the tensors hold: every result tensor owns the
//! `Op` that made it, and the `Op` owns handles on its inputs (see `op.rs`). [`Graph::of`]
//! follows those handles back from one output — usually the loss — and copies out, for every
//! tensor it meets, a [`Node`]: the op's name, the output shape, the inputs, and the tensors
//! the op's gradient rule will read ([`Saved`]).
//!
//! What counts as saved is exactly what the rule for that op in `backprop.rs` reads: `a * b`
//! needs both factors (the gradient for `a` is `g * b`), `a + b` needs neither (both gradients
//! are `g`), `exp` needs its own output, `relu` its input, max pooling only the positions of
//! the maxima. Those tensors must stay in memory from the forward pass until the backward
//! pass, which is why training takes so much more memory than inference.
//!
//! ```
//! use senet_tensor::graph::Graph;
//! use senet_tensor::Tensor;
//!
//! let a = Tensor::ones(&[2, 3]).requires_grad();
//! let b = Tensor::full(&[2, 3], 2.0).requires_grad();
//! let y = a.mul(&b)?.add(&a)?.sum_all()?;
//! let graph = Graph::of(&y);
//! // a, b, then mul, add, and sum_all's two ops (sum, reshape); the loss comes last.
//! assert_eq!(graph.nodes.len(), 6);
//! // Only the product keeps anything for backward: a and b, 6 f32 values each.
//! assert_eq!(graph.saved_bytes(), 2 * 6 * 4);
//! println!("{}", graph.to_dot("y = (a*b + a).sum()"));
//! # Ok::<(), senet_tensor::Error>(())
//! ```
use crate::storage::IndexStorage;
use crate::{DType, Indices, Op, Tensor, TensorId};
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// What kind of tensor a [`Node`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// The result of a recorded op, such as `conv2d` or `mul` (the op's name, as
    /// [`Op::name`] gives it).
    Op(String),
    /// A leaf that gradients are computed for: a model parameter, or any tensor made with
    /// [`Tensor::requires_grad`]. This is where `backward` delivers gradients.
    Parameter,
    /// A leaf that needs no gradient, read by some op: the input images, say. Backward never
    /// goes past it.
    Constant,
}

/// One tensor an op's gradient rule reads, and so keeps alive from the forward pass to the
/// backward pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// Which of the op's tensors it is: `"input"`, `"weight"`, `"output"`, `"probs"`,
    /// `"argmax"`... (the names the rule in `backprop.rs` uses).
    pub what: &'static str,
    /// Its shape (for indices, the number of them).
    pub shape: Vec<usize>,
    /// The bytes of the buffer it keeps alive. A view (a reshape, a permute, a slice) keeps
    /// the whole buffer it looks into, so this is the buffer's size, not the view's.
    pub bytes: usize,
    /// Tells buffers apart: two saved tensors with the same `buffer` share one allocation,
    /// which [`Graph::saved_bytes`] counts once. (The buffer's address while the graph was
    /// alive; only good for comparing.)
    pub buffer: usize,
}

/// One tensor of the graph: an op's result, or a leaf.
#[derive(Clone, Debug)]
pub struct Node {
    /// The tensor's identity ([`Tensor::id`]).
    pub id: TensorId,
    /// An op's result, a parameter or a constant.
    pub kind: NodeKind,
    /// A name for the tensor, if one was given with [`Graph::name`] (parameters:
    /// `layer1.0.conv1.weight`).
    pub name: Option<String>,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// The tensor's element type.
    pub dtype: DType,
    /// The op's inputs, as positions in [`Graph::nodes`], in the op's argument order; always
    /// before this node. Empty for a leaf.
    pub inputs: Vec<usize>,
    /// What the op's gradient rule keeps for the backward pass. Empty for a leaf.
    pub saved: Vec<Saved>,
}

impl Node {
    /// The op's name, or `"parameter"` / `"constant"` for a leaf.
    pub fn label(&self) -> &str {
        match &self.kind {
            NodeKind::Op(name) => name,
            NodeKind::Parameter => "parameter",
            NodeKind::Constant => "constant",
        }
    }

    /// The bytes this node's op saves for backward (a buffer saved twice by the same op, as
    /// in `a * a`, counted once).
    pub fn saved_bytes(&self) -> usize {
        distinct_bytes(&self.saved)
    }
}

/// The graph behind one output tensor, in topological order: every node comes after all of
/// its inputs, and the output itself is last. Backward visits the op nodes in the reverse of
/// this order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every tensor the output depends on through recorded ops, inputs first.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Walks the graph back from `output` (a loss, usually) and describes every tensor it
    /// reaches: each recorded op's result, the parameters, and the constants they read.
    /// A tensor that was computed with recording off (or from constants only) has no op and
    /// gives a graph of that one node.
    pub fn of(output: &Tensor) -> Graph {
        let order = topological_order(output);
        let position: HashMap<TensorId, usize> =
            order.iter().enumerate().map(|(i, t)| (t.id(), i)).collect();
        let nodes = order
            .iter()
            .map(|t| {
                let (kind, inputs, saved) = match t.op() {
                    Some(op) => (
                        NodeKind::Op(op.name()),
                        op.inputs().iter().map(|x| position[&x.id()]).collect(),
                        saved_by(t, op),
                    ),
                    None if t.is_variable() => (NodeKind::Parameter, Vec::new(), Vec::new()),
                    None => (NodeKind::Constant, Vec::new(), Vec::new()),
                };
                Node {
                    id: t.id(),
                    kind,
                    name: None,
                    shape: t.shape().to_vec(),
                    dtype: t.dtype(),
                    inputs,
                    saved,
                }
            })
            .collect();
        Graph { nodes }
    }

    /// Gives names to the nodes of these tensors (those not in the graph are skipped): pass a
    /// model's `(name, parameter)` list to see `conv1.weight` instead of `parameter`.
    pub fn name<'a>(&mut self, names: impl IntoIterator<Item = (&'a str, &'a Tensor)>) {
        let names: HashMap<TensorId, &str> = names.into_iter().map(|(n, t)| (t.id(), n)).collect();
        for node in &mut self.nodes {
            if let Some(name) = names.get(&node.id) {
                node.name = Some(name.to_string());
            }
        }
    }

    /// The number of op nodes (recorded ops; leaves not counted).
    pub fn op_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Op(_)))
            .count()
    }

    /// The number of parameter nodes (leaves that get a gradient).
    pub fn parameter_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Parameter)
            .count()
    }

    /// The bytes the whole graph keeps for its backward pass: every saved buffer, each counted
    /// once however many ops save it (a conv's input that a relu also saves, a weight used
    /// twice). This includes the parameters that rules read (a conv's weight), which exist
    /// anyway; the rest is activation memory that only training needs.
    pub fn saved_bytes(&self) -> usize {
        let all: Vec<Saved> = self.nodes.iter().flat_map(|n| n.saved.clone()).collect();
        distinct_bytes(&all)
    }

    /// The graph in Graphviz's DOT language, titled `title`: one box per op (its name, output
    /// shape and what it saves), one per parameter (its name and shape), one per constant, an
    /// arrow from each input to the op that reads it, and the total saved bytes in the title.
    /// Render it with `dot -Tsvg graph.dot -o graph.svg`.
    pub fn to_dot(&self, title: &str) -> String {
        let mut dot = String::new();
        let summary = format!(
            "{title}\n{} ops, {} parameters; saved for backward: {} bytes ({})",
            self.op_count(),
            self.parameter_count(),
            self.saved_bytes(),
            human_bytes(self.saved_bytes())
        );
        // Writing to a String cannot fail, hence the ignored results below.
        let _ = writeln!(dot, "digraph autograd {{");
        let _ = writeln!(dot, "  label=\"{}\";", escape(&summary));
        let _ = writeln!(dot, "  labelloc=t;");
        let _ = writeln!(
            dot,
            "  node [shape=box, fontname=\"Helvetica\", fontsize=10];"
        );
        let _ = writeln!(dot, "  edge [arrowsize=0.6];");
        let last = self.nodes.len().saturating_sub(1);
        for (i, node) in self.nodes.iter().enumerate() {
            let mut lines = Vec::new();
            if let Some(name) = &node.name {
                lines.push(name.clone());
            }
            lines.push(node.label().to_string());
            lines.push(format!("{:?}{}", node.shape, dtype_suffix(node.dtype)));
            for s in &node.saved {
                lines.push(format!(
                    "saves {} {:?}: {}",
                    s.what,
                    s.shape,
                    human_bytes(s.bytes)
                ));
            }
            let label = lines
                .iter()
                .map(|l| escape(l))
                .collect::<Vec<_>>()
                .join("\\n");
            let style = match node.kind {
                NodeKind::Parameter => ", style=filled, fillcolor=\"#cfe2ff\"",
                NodeKind::Constant => ", shape=ellipse, style=filled, fillcolor=\"#e9ecef\"",
                NodeKind::Op(_) if !node.saved.is_empty() => {
                    ", style=filled, fillcolor=\"#fff3cd\""
                }
                NodeKind::Op(_) => "",
            };
            let output = if i == last { ", peripheries=2" } else { "" };
            let _ = writeln!(dot, "  n{i} [label=\"{label}\"{style}{output}];");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for input in &node.inputs {
                let _ = writeln!(dot, "  n{input} -> n{i};");
            }
        }
        dot.push_str("}\n");
        dot
    }
}

/// The tensors `output` depends on through recorded ops, each after all of its inputs: the
/// same iterative depth-first search as `backward` uses (`backprop.rs`), except that it also
/// keeps the constants ops read, so the picture shows where the data came in.
fn topological_order(output: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // (tensor, whether its inputs are already in `order`)
    let mut stack = vec![(output.clone(), false)];
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            // Reversed so that the first input is visited (and listed) first.
            for input in op.inputs().into_iter().rev() {
                if !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// What the gradient rule of `op` (whose result is `output`) reads, as `backprop.rs`'s
/// `input_gradients` does: one arm per op, in the same order.
fn saved_by(output: &Tensor, op: &Op) -> Vec<Saved> {
    let t = saved_tensor;
    match op {
        Op::Binary(kind, a, b) => match kind {
            // Gradients g and g (or -g): only the shapes are needed.
            BinaryOp::Add | BinaryOp::Sub => vec![],
            // d(a*b) = g*b, g*a; d(a/b) = g/b, -g*a/b^2.
            BinaryOp::Mul | BinaryOp::Div => vec![t("a", a), t("b", b)],
            // No gradient rule at all.
            BinaryOp::Eq | BinaryOp::Maximum | BinaryOp::ReluGrad => vec![],
        },
        Op::Unary(kind, x) => match kind {
            // Rules written with the output y: exp' = y, sqrt' = 1/(2y), sigmoid' = y(1-y)...
            UnaryOp::Exp | UnaryOp::Sqrt | UnaryOp::Sigmoid | UnaryOp::Tanh => {
                vec![t("output", output)]
            }
            // ...and with the input x: log' = 1/x, relu' = (x > 0).
            UnaryOp::Log | UnaryOp::Powf(_) | UnaryOp::Relu => vec![t("input", x)],
            UnaryOp::Silu => vec![t("input", x), t("output", output)],
            // Constant derivatives.
            UnaryOp::Neg | UnaryOp::Scale(_) | UnaryOp::AddScalar(_) | UnaryOp::Step => vec![],
        },
        // The gradient is broadcast, reshaped, permuted, narrowed or converted back: shapes
        // (and a dtype or device) are all the rule needs.
        Op::Sum { .. }
        | Op::Reshape(_)
        | Op::Permute { .. }
        | Op::Broadcast(_)
        | Op::Narrow { .. }
        | Op::Concat { .. }
        | Op::ToDType(_)
        | Op::ToDevice(_) => vec![],
        // Where the maxima were: the input compared with the output.
        Op::Max { input, .. } => vec![t("input", input), t("output", output)],
        Op::Matmul(a, b) => vec![t("a", a), t("b", b)],
        Op::Softmax { .. } => vec![t("output", output)],
        Op::CrossEntropy { labels, probs, .. } => {
            vec![t("probs", probs), indices("labels", labels)]
        }
        Op::Conv2d { input, weight, .. } => {
            // The weight's gradient needs the input; the input's gradient needs the weight,
            // and is skipped when the input needs none (the first conv, on the images).
            let mut saved = vec![t("input", input)];
            if input.tracks_grad() {
                saved.push(t("weight", weight));
            }
            saved
        }
        Op::BatchNorm2d {
            input,
            weight,
            mean,
            invstd,
            ..
        } => {
            let mut saved = vec![t("input", input)];
            saved.extend(weight.iter().map(|w| t("weight", w)));
            saved.push(t("mean", mean));
            saved.push(t("invstd", invstd));
            saved
        }
        Op::MaxPool2d { argmax, .. } => vec![indices("argmax", argmax)],
        Op::AvgPool2d { .. } => vec![],
        Op::GroupedLinear { input, weight, .. } => vec![t("input", input), t("weight", weight)],
        // A custom rule is handed all its inputs and the output.
        Op::Custom { inputs, .. } => inputs
            .iter()
            .map(|x| t("input", x))
            .chain([t("output", output)])
            .collect(),
    }
}

/// A saved tensor: its whole buffer's bytes, keyed by the buffer's address.
fn saved_tensor(what: &'static str, x: &Tensor) -> Saved {
    let storage = x.storage();
    Saved {
        what,
        shape: x.shape().to_vec(),
        bytes: storage.len() * storage.dtype().size(),
        buffer: std::ptr::from_ref(storage) as usize,
    }
}

/// Saved indices (u32, 4 bytes each).
fn indices(what: &'static str, i: &Indices) -> Saved {
    let len = match &*i.0 {
        IndexStorage::Cpu(v) => v.len(),
        IndexStorage::Gpu(b) => b.len(),
    };
    Saved {
        what,
        shape: vec![len],
        bytes: len * std::mem::size_of::<u32>(),
        buffer: std::sync::Arc::as_ptr(&i.0) as usize,
    }
}

/// The bytes of `saved`, each buffer counted once.
fn distinct_bytes(saved: &[Saved]) -> usize {
    let mut seen = HashSet::new();
    saved
        .iter()
        .filter(|s| seen.insert(s.buffer))
        .map(|s| s.bytes)
        .sum()
}

/// ` f64` for f64 tensors; f32 (the usual) goes unsaid.
fn dtype_suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "",
        DType::F64 => " f64",
    }
}

/// `512 B`, `24.0 KiB`, `3.5 MiB`, `1.20 GiB`.
pub fn human_bytes(bytes: usize) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// Text made safe inside a DOT double-quoted string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = (a*b + a).sum(), with a and b of shape [2, 3].
    fn tiny() -> (Tensor, Tensor, Tensor) {
        let a = Tensor::ones(&[2, 3]).requires_grad();
        let b = Tensor::full(&[2, 3], 2.0).requires_grad();
        let y = a.mul(&b).unwrap().add(&a).unwrap().sum_all().unwrap();
        (a, b, y)
    }

    #[test]
    fn graph_walk_of_a_tiny_expression() {
        let (a, b, y) = tiny();
        let mut g = Graph::of(&y);
        g.name([("a", &a), ("b", &b)]);
        let kinds: Vec<&str> = g.nodes.iter().map(Node::label).collect();
        // Inputs first (a before b: argument order), the output last.
        assert_eq!(
            kinds,
            ["parameter", "parameter", "mul", "add", "sum", "reshape"]
        );
        assert_eq!(g.op_count(), 4);
        assert_eq!(g.parameter_count(), 2);
        assert_eq!(g.nodes[0].name.as_deref(), Some("a"));
        assert_eq!(g.nodes[1].name.as_deref(), Some("b"));
        assert_eq!(g.nodes[5].id, y.id());
        // Edges: mul reads a and b; add reads mul's result and a again.
        assert_eq!(g.nodes[2].inputs, [0, 1]);
        assert_eq!(g.nodes[3].inputs, [2, 0]);
        // The sum keeps the reduced axes (size 1); the reshape drops them.
        assert_eq!(g.nodes[4].shape, [1, 1]);
        assert!(g.nodes[5].shape.is_empty());
        // Only mul's rule reads tensors: both factors, 6 f32 values each.
        let saved = &g.nodes[2].saved;
        assert_eq!(saved.iter().map(|s| s.what).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(g.nodes[2].saved_bytes(), 48);
        assert!(g.nodes[3..].iter().all(|n| n.saved.is_empty()));
        assert_eq!(g.saved_bytes(), 48);
    }

    #[test]
    fn graph_counts_a_shared_buffer_once() {
        // a * a saves a twice, one buffer; exp saves its output, a new buffer.
        let a = Tensor::ones(&[4]).requires_grad();
        let y = a.mul(&a).unwrap().exp().unwrap().sum_all().unwrap();
        let g = Graph::of(&y);
        assert_eq!(g.nodes.len(), 5, "a, mul, exp, sum, reshape");
        assert_eq!(g.nodes[1].saved.len(), 2);
        assert_eq!(g.nodes[1].saved_bytes(), 16);
        assert_eq!(g.nodes[2].saved[0].what, "output");
        assert_eq!(g.saved_bytes(), 16 + 16);
    }

    #[test]
    fn graph_shows_constants_and_stops_at_unrecorded_tensors() {
        let x = Tensor::ones(&[3]);
        let w = Tensor::ones(&[3]).requires_grad();
        let g = Graph::of(&x.mul(&w).unwrap());
        assert_eq!(g.nodes[0].kind, NodeKind::Constant);
        assert_eq!(g.nodes[1].kind, NodeKind::Parameter);
        // Nothing recorded: one constant node.
        let g = Graph::of(&x.relu().unwrap());
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].kind, NodeKind::Constant);
    }

    #[test]
    fn graph_to_dot_has_nodes_edges_and_the_total() {
        let (a, b, y) = tiny();
        let mut g = Graph::of(&y);
        g.name([("a", &a), ("b", &b)]);
        let dot = g.to_dot("tiny \"test\"");
        assert!(dot.starts_with("digraph autograd {\n"), "{dot}");
        assert!(dot.ends_with("}\n"));
        assert!(dot.contains("tiny \\\"test\\\""), "title escaped: {dot}");
        assert!(dot.contains("saved for backward: 48 bytes (48 B)"), "{dot}");
        assert!(
            dot.contains("n0 [label=\"a\\nparameter\\n[2, 3]\""),
            "{dot}"
        );
        assert!(dot.contains("saves a [2, 3]: 24 B"), "{dot}");
        assert!(dot.contains("n0 -> n2;") && dot.contains("n1 -> n2;"));
        assert!(dot.contains("n2 -> n3;") && dot.contains("n0 -> n3;"));
        assert_eq!(dot.matches(" -> ").count(), 6);
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
