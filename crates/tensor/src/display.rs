//! `Display` for [`Tensor`]: what PyTorch's `print(tensor)` shows, with its default print
//! options (`torch/_tensor_str.py`: precision 4, threshold 1000, edgeitems 3, linewidth 80).
//!
//! ```text
//! tensor([[1.0000, 2.5000],
//!         [3.0000, 4.0000]], dtype=f64, op=matmul)
//! ```
//!
//! - One number format for the whole tensor, right-aligned to a common width: whole numbers
//!   as `1.`, else 4 decimals (`0.1235`), or scientific (`1.0000e-05`) when the nonzero
//!   magnitudes span more than a factor 1000, pass 1e8, or go below 1e-4.
//!   `nan`, `inf` and `-inf` as Python spells them.
//! - Rows of a rank-n tensor are separated by n-1 line breaks and indented under their `[`;
//!   a row too long for 80 columns wraps.
//! - Over 1000 elements, each axis longer than 6 shows its first and last 3 entries around
//!   `...`; only those entries are read back (the format is chosen from them, as PyTorch does).
//! - Suffixes in PyTorch's order, in our words: `device=gpu:0` off the CPU, `size=(0, 3)` for
//!   an empty tensor that is not 1-D, `dtype=f64` for a dtype other than f32, then
//!   `op=matmul` (PyTorch's `grad_fn=<...>`) or `requires_grad=true` for a variable leaf.
use crate::{DType, Device, Result, Tensor};
use std::fmt;

/// PyTorch's default print options.
const PRECISION: usize = 4;
const THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;
const LINE_WIDTH: usize = 80;
const PREFIX: &str = "tensor(";

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display cannot return our error, and a failed GPU read should not panic `to_string`.
        let body = self
            .values_str(PREFIX.len())
            .unwrap_or_else(|e| format!("<values unavailable: {e}>"));
        f.write_str(&add_suffixes(format!("{PREFIX}{body}"), &self.suffixes()))
    }
}

impl Tensor {
    /// The bracketed values (or the scalar), laid out as if they start at column `indent`.
    fn values_str(&self, indent: usize) -> Result<String> {
        if self.numel() == 0 {
            return Ok("[]".into());
        }
        let summarize = self.numel() > THRESHOLD;
        let shown = if summarize {
            // Detached, so that the narrows and concats below record nothing.
            edges(&self.detach(), 0)?
        } else {
            self.clone()
        };
        let values = shown.to_vec::<f64>()?;
        let cut: Vec<bool> = self
            .shape()
            .iter()
            .map(|&n| summarize && n > 2 * EDGE_ITEMS)
            .collect();
        let printer = Printer {
            values: &values,
            shape: shown.shape(),
            cut: &cut,
            number: NumberFormat::new(&values),
        };
        let mut out = String::new();
        printer.block(&mut out, 0, 0, indent);
        Ok(out)
    }

    /// What follows the values, in PyTorch's order.
    fn suffixes(&self) -> Vec<String> {
        let mut suffixes = Vec::new();
        if self.device() != Device::Cpu {
            suffixes.push(format!("device={}", self.device()));
        }
        if self.numel() == 0 && self.rank() != 1 {
            suffixes.push(format!("size={}", python_tuple(self.shape())));
        }
        if self.dtype() != DType::F32 {
            suffixes.push(format!("dtype={}", dtype_name(self.dtype())));
        }
        if let Some(op) = self.op() {
            suffixes.push(format!("op={}", op.name()));
        } else if self.is_variable() {
            suffixes.push("requires_grad=true".into());
        }
        suffixes
    }
}

/// The tensor cut down to the first and last `EDGE_ITEMS` entries of every axis longer than
/// `2 * EDGE_ITEMS`, from axis `axis` on. Narrowing is a view and happens before any copy, so
/// only the shown entries are ever gathered.
fn edges(t: &Tensor, axis: usize) -> Result<Tensor> {
    if axis == t.rank() {
        return Ok(t.clone());
    }
    let n = t.shape()[axis];
    if n <= 2 * EDGE_ITEMS {
        return edges(t, axis + 1);
    }
    let head = edges(&t.narrow(axis, 0, EDGE_ITEMS)?, axis + 1)?;
    let tail = edges(&t.narrow(axis, n - EDGE_ITEMS, EDGE_ITEMS)?, axis + 1)?;
    Tensor::concat(&[&head, &tail], axis)
}

/// Appends the suffixes as `, name=value`, starting a new line (indented under the first `[`)
/// when one would pass the line width. Mirrors `_add_suffixes`, including how it measures the
/// last line (two more than its length on the first line, one more on later ones).
fn add_suffixes(mut s: String, suffixes: &[String]) -> String {
    let mut last_line = match s.rfind('\n') {
        Some(i) => s.len() - i + 1,
        None => s.len() + 2,
    };
    for suffix in suffixes {
        if last_line + suffix.len() + 2 > LINE_WIDTH {
            s.push_str(&format!(",\n{}{suffix}", " ".repeat(PREFIX.len())));
            last_line = PREFIX.len() + suffix.len();
        } else {
            s.push_str(&format!(", {suffix}"));
            last_line += suffix.len() + 2;
        }
    }
    s.push(')');
    s
}

/// A shape as Python prints a tuple: `(0, 3)`, `(0,)`.
fn python_tuple(shape: &[usize]) -> String {
    let items: Vec<String> = shape.iter().map(usize::to_string).collect();
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

/// How every number of one tensor is written (PyTorch's `_Formatter` for floating dtypes).
#[derive(Debug, PartialEq)]
struct NumberFormat {
    /// Every finite value is whole: written `3.`.
    whole: bool,
    scientific: bool,
    /// The common width every number is right-aligned to.
    width: usize,
}

impl NumberFormat {
    /// Chosen from the nonzero finite values only, so zeros and `nan`/`inf` never force
    /// scientific notation (and may be wider than `width`, as in PyTorch).
    fn new(values: &[f64]) -> NumberFormat {
        let nonzero: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v != 0.0)
            .collect();
        let mut format = NumberFormat {
            whole: true,
            scientific: false,
            width: 1,
        };
        if nonzero.is_empty() {
            return format;
        }
        let (min, max) = nonzero
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
                (lo.min(v.abs()), hi.max(v.abs()))
            });
        format.whole = nonzero.iter().all(|v| v.fract() == 0.0);
        format.scientific = max / min > 1000.0 || max > 1.0e8 || min < 1.0e-4;
        let widest = nonzero.iter().map(|&v| format.unpadded(v).len()).max();
        format.width = widest.unwrap_or(1).max(1);
        format
    }

    /// `v` right-aligned to the common width.
    fn format(&self, v: f64) -> String {
        format!("{:>width$}", self.unpadded(v), width = self.width)
    }

    fn unpadded(&self, v: f64) -> String {
        if !v.is_finite() {
            // Python's spelling (Rust writes `NaN`); PyTorch adds no `.` to these.
            return if v.is_nan() {
                "nan"
            } else if v > 0.0 {
                "inf"
            } else {
                "-inf"
            }
            .into();
        }
        if self.scientific {
            scientific(v)
        } else if self.whole {
            format!("{v:.0}.")
        } else {
            format!("{v:.PRECISION$}")
        }
    }
}

/// `v` as Python's `{:.4e}`: Rust writes `1.0000e-5`, Python a signed exponent of at least
/// two digits, `1.0000e-05`.
fn scientific(v: f64) -> String {
    let s = format!("{v:.PRECISION$e}");
    let (mantissa, exponent) = s.split_once('e').expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes an integer exponent");
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// Lays out the (possibly cut-down) values, row-major in `values` with shape `shape`; an axis
/// with `cut` set holds the first and last `EDGE_ITEMS` entries of a longer one.
struct Printer<'a> {
    values: &'a [f64],
    shape: &'a [usize],
    cut: &'a [bool],
    number: NumberFormat,
}

impl Printer<'_> {
    /// Writes the sub-tensor of axes `axis..` starting at `values[start]`, its `[` at column
    /// `indent` (PyTorch's `_tensor_str_with_formatter`).
    fn block(&self, out: &mut String, axis: usize, start: usize, indent: usize) {
        let rank = self.shape.len();
        if rank == 0 {
            out.push_str(&self.number.format(self.values[0]));
            return;
        }
        if axis == rank - 1 {
            self.row(out, start, indent);
            return;
        }
        let stride: usize = self.shape[axis + 1..].iter().product();
        // One line break per axis left below this one: blank lines between 2-D blocks, etc.
        let separator = format!(
            ",{}{}",
            "\n".repeat(rank - axis - 1),
            " ".repeat(indent + 1)
        );
        out.push('[');
        for (k, entry) in self.entries(axis).into_iter().enumerate() {
            if k > 0 {
                out.push_str(&separator);
            }
            match entry {
                Some(i) => self.block(out, axis + 1, start + i * stride, indent + 1),
                None => out.push_str("..."),
            }
        }
        out.push(']');
    }

    /// One row of numbers (`_vector_str`), wrapped to as many per line as fit in the width.
    fn row(&self, out: &mut String, start: usize, indent: usize) {
        let axis = self.shape.len() - 1;
        let cells: Vec<String> = self
            .entries(axis)
            .into_iter()
            .map(|entry| match entry {
                Some(i) => self.number.format(self.values[start + i]),
                // The space lines `...` up with the numbers after a `, `.
                None => " ...".into(),
            })
            .collect();
        let per_line = (LINE_WIDTH.saturating_sub(indent) / (self.number.width + 2)).max(1);
        let lines: Vec<String> = cells.chunks(per_line).map(|c| c.join(", ")).collect();
        out.push('[');
        out.push_str(&lines.join(&format!(",\n{}", " ".repeat(indent + 1))));
        out.push(']');
    }

    /// The indices shown along `axis`, with `None` where `...` stands.
    fn entries(&self, axis: usize) -> Vec<Option<usize>> {
        let n = self.shape[axis];
        if !self.cut[axis] {
            return (0..n).map(Some).collect();
        }
        let mut entries: Vec<Option<usize>> = (0..EDGE_ITEMS).map(Some).collect();
        entries.push(None);
        entries.extend((n - EDGE_ITEMS..n).map(Some));
        entries
    }
}

#[cfg(test)]
mod tests {
    //! Every expected string is what PyTorch 2.15 printed for the same values (f32 unless
    //! said), with its `dtype=torch.float64`, `grad_fn=<MmBackward0>` and
    //! `requires_grad=True` replaced by our words.
    use super::*;

    fn t(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape).unwrap()
    }

    /// `0, 1, ..., n - 1` divided by `div`.
    fn range(n: usize, div: f32) -> Vec<f32> {
        (0..n).map(|i| i as f32 / div).collect()
    }

    fn check(tensor: &Tensor, expected: &str) {
        assert_eq!(tensor.to_string(), expected);
    }

    #[test]
    fn vectors_and_matrices() {
        check(
            &t(&[1.0, 2.5, 3.0], &[3]),
            "tensor([1.0000, 2.5000, 3.0000])",
        );
        check(
            &t(&[1., 2., 3., 4.], &[2, 2]),
            "tensor([[1., 2.],
        [3., 4.]])",
        );
        // A transposed view prints in its own order.
        check(
            &t(&[1., 2., 3., 4.], &[2, 2]).t().unwrap(),
            "tensor([[1., 3.],
        [2., 4.]])",
        );
    }

    #[test]
    fn higher_ranks_separate_blocks_with_blank_lines() {
        check(
            &t(&range(8, 4.0), &[2, 2, 2]),
            "tensor([[[0.0000, 0.2500],
         [0.5000, 0.7500]],

        [[1.0000, 1.2500],
         [1.5000, 1.7500]]])",
        );
        check(
            &t(&range(16, 1.0), &[2, 2, 2, 2]),
            "tensor([[[[ 0.,  1.],
          [ 2.,  3.]],

         [[ 4.,  5.],
          [ 6.,  7.]]],


        [[[ 8.,  9.],
          [10., 11.]],

         [[12., 13.],
          [14., 15.]]]])",
        );
    }

    #[test]
    fn numbers_share_one_format_and_width() {
        check(&t(&[-1., 10., 100.], &[3]), "tensor([ -1.,  10., 100.])");
        check(
            &t(&[0.12345, -1.5, 10.25], &[3]),
            "tensor([ 0.1235, -1.5000, 10.2500])",
        );
        check(
            &t(&[-1.5, 2.25, 3.125, -40.0], &[2, 2]),
            "tensor([[ -1.5000,   2.2500],
        [  3.1250, -40.0000]])",
        );
        check(&t(&[0., 0.], &[2]), "tensor([0., 0.])");
        check(&t(&[-0., 1.], &[2]), "tensor([-0., 1.])");
    }

    #[test]
    fn scientific_when_magnitudes_are_far_apart_tiny_or_huge() {
        check(
            &t(&[1e-5, 1.0, 2.0], &[3]),
            "tensor([1.0000e-05, 1.0000e+00, 2.0000e+00])",
        );
        check(&t(&[0.5, 2000.0], &[2]), "tensor([5.0000e-01, 2.0000e+03])");
        check(&t(&[1e9, 1.0], &[2]), "tensor([1.0000e+09, 1.0000e+00])");
    }

    #[test]
    fn nan_and_inf_as_python_writes_them() {
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        check(
            &t(&[1.0, nan, inf, -inf], &[4]),
            "tensor([1., nan, inf, -inf])",
        );
        check(
            &t(&[0.5, nan, -inf], &[3]),
            "tensor([0.5000,    nan,   -inf])",
        );
        check(
            &t(&[1e-5, nan, 1.0], &[3]),
            "tensor([1.0000e-05,        nan, 1.0000e+00])",
        );
        check(&t(&[nan, 0.], &[2]), "tensor([nan, 0.])");
    }

    #[test]
    fn scalars_and_empty_tensors() {
        check(&Tensor::scalar(3.5), "tensor(3.5000)");
        check(&Tensor::scalar(-2.0), "tensor(-2.)");
        check(&t(&[], &[0]), "tensor([])");
        check(&t(&[], &[0, 3]), "tensor([], size=(0, 3))");
        check(
            &Tensor::from_vec(Vec::<f64>::new(), &[2, 0]).unwrap(),
            "tensor([], size=(2, 0), dtype=f64)",
        );
    }

    #[test]
    fn suffixes_name_dtype_op_and_variables() {
        check(
            &Tensor::from_vec(vec![1.0_f64, 2.0], &[2]).unwrap(),
            "tensor([1., 2.], dtype=f64)",
        );
        let a = t(&[1., 2., 3., 4.], &[2, 2]).requires_grad();
        let b = t(&[5., 6., 7., 8.], &[2, 2]);
        check(
            &a.matmul(&b).unwrap(),
            "tensor([[19., 22.],
        [43., 50.]], op=matmul)",
        );
        check(
            &a,
            "tensor([[1., 2.],
        [3., 4.]], requires_grad=true)",
        );
    }

    #[test]
    fn long_rows_and_suffixes_wrap_at_80_columns() {
        check(
            &t(&range(20, 3.0), &[20]),
            "tensor([0.0000, 0.3333, 0.6667, 1.0000, 1.3333, 1.6667, 2.0000, 2.3333, 2.6667,
        3.0000, 3.3333, 3.6667, 4.0000, 4.3333, 4.6667, 5.0000, 5.3333, 5.6667,
        6.0000, 6.3333])",
        );
        let halves: Vec<f64> = (0..9).map(|i| i as f64 + 0.5).collect();
        check(
            &Tensor::from_vec(halves, &[9]).unwrap(),
            "tensor([0.5000, 1.5000, 2.5000, 3.5000, 4.5000, 5.5000, 6.5000, 7.5000, 8.5000],
       dtype=f64)",
        );
    }

    #[test]
    fn over_1000_elements_show_3_edge_items_per_axis() {
        check(
            &t(&range(2000, 1.0), &[2000]),
            "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,
        1.9990e+03])",
        );
        check(
            &t(&range(1600, 1.0), &[40, 40]),
            "tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 3.7000e+01, 3.8000e+01,
         3.9000e+01],
        [4.0000e+01, 4.1000e+01, 4.2000e+01,  ..., 7.7000e+01, 7.8000e+01,
         7.9000e+01],
        [8.0000e+01, 8.1000e+01, 8.2000e+01,  ..., 1.1700e+02, 1.1800e+02,
         1.1900e+02],
        ...,
        [1.4800e+03, 1.4810e+03, 1.4820e+03,  ..., 1.5170e+03, 1.5180e+03,
         1.5190e+03],
        [1.5200e+03, 1.5210e+03, 1.5220e+03,  ..., 1.5570e+03, 1.5580e+03,
         1.5590e+03],
        [1.5600e+03, 1.5610e+03, 1.5620e+03,  ..., 1.5970e+03, 1.5980e+03,
         1.5990e+03]])",
        );
    }

    #[test]
    fn truncated_rank_3_keeps_short_axes_whole() {
        // Axis 1 (length 2) is kept; ties round to even as in Python (100.125 -> 1.0012e+02).
        check(
            &t(&range(1120, 8.0), &[7, 2, 80]),
            "tensor([[[0.0000e+00, 1.2500e-01, 2.5000e-01,  ..., 9.6250e+00,
          9.7500e+00, 9.8750e+00],
         [1.0000e+01, 1.0125e+01, 1.0250e+01,  ..., 1.9625e+01,
          1.9750e+01, 1.9875e+01]],

        [[2.0000e+01, 2.0125e+01, 2.0250e+01,  ..., 2.9625e+01,
          2.9750e+01, 2.9875e+01],
         [3.0000e+01, 3.0125e+01, 3.0250e+01,  ..., 3.9625e+01,
          3.9750e+01, 3.9875e+01]],

        [[4.0000e+01, 4.0125e+01, 4.0250e+01,  ..., 4.9625e+01,
          4.9750e+01, 4.9875e+01],
         [5.0000e+01, 5.0125e+01, 5.0250e+01,  ..., 5.9625e+01,
          5.9750e+01, 5.9875e+01]],

        ...,

        [[8.0000e+01, 8.0125e+01, 8.0250e+01,  ..., 8.9625e+01,
          8.9750e+01, 8.9875e+01],
         [9.0000e+01, 9.0125e+01, 9.0250e+01,  ..., 9.9625e+01,
          9.9750e+01, 9.9875e+01]],

        [[1.0000e+02, 1.0012e+02, 1.0025e+02,  ..., 1.0962e+02,
          1.0975e+02, 1.0988e+02],
         [1.1000e+02, 1.1012e+02, 1.1025e+02,  ..., 1.1962e+02,
          1.1975e+02, 1.1988e+02]],

        [[1.2000e+02, 1.2012e+02, 1.2025e+02,  ..., 1.2962e+02,
          1.2975e+02, 1.2988e+02],
         [1.3000e+02, 1.3012e+02, 1.3025e+02,  ..., 1.3962e+02,
          1.3975e+02, 1.3988e+02]]])",
        );
    }

    #[test]
    fn only_the_edges_are_gathered() {
        let big = t(&range(1600, 1.0), &[40, 40]).requires_grad();
        let shown = edges(&big.detach(), 0).unwrap();
        assert_eq!(shown.shape(), &[6, 6]);
        let row: Vec<f32> = shown.narrow(0, 3, 1).unwrap().to_vec().unwrap();
        assert_eq!(row, [1480., 1481., 1482., 1517., 1518., 1519.]);
        // Printing a tensor that needs gradients records nothing.
        assert!(edges(&big.detach(), 0).unwrap().op().is_none());
    }
}
