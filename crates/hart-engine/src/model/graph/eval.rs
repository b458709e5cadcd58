//! What each op computes: one libtorch call (or a few) per node, reading
//! its inputs from the values computed so far.

use tch::{Kind, Tensor};

use super::{Mode, Node, Op, Pads};
use crate::error::{HartError, Result};
use crate::model::params::ParamStore;

fn input<'a>(env: &'a [Option<Tensor>], node: &Node, k: usize) -> Result<&'a Tensor> {
    let id = *node
        .inputs
        .get(k)
        .ok_or_else(|| HartError::Model(format!("node {} ({}) lacks input {k}", node.name, node.op.kind_name())))?;
    env.get(id)
        .and_then(|v| v.as_ref())
        .ok_or_else(|| HartError::Model(format!("node {}: input {k} was not computed", node.name)))
}

fn opt_param<'a>(params: &'a ParamStore, name: &Option<String>) -> Result<Option<&'a Tensor>> {
    name.as_deref().map(|n| params.get(n)).transpose()
}

/// Reads a small int64 tensor (shape data) as a vector.
pub fn to_i64_vec(t: &Tensor) -> Result<Vec<i64>> {
    let t = t.to_kind(Kind::Int64).to_device(tch::Device::Cpu).flatten(0, -1);
    Ok(Vec::<i64>::try_from(&t)?)
}

fn norm_axis(axis: i64, rank: usize) -> i64 {
    if axis < 0 {
        axis + rank as i64
    } else {
        axis
    }
}

/// Max-pooling over non-overlapping windows as maxima of strided views:
/// libtorch's CPU max_pool2d kernel dominated sweep profiles on small
/// channel counts. Same values, NaN propagating alike; only without autograd,
/// because `maximum` splits the gradient between tied maxima where max_pool2d
/// picks one.
fn tiled_max_pool(
    x: &Tensor,
    kernel: &[i64; 2],
    stride: &[i64; 2],
    pad: [i64; 2],
    dilation: &[i64; 2],
    ceil_mode: bool,
) -> Result<Option<Tensor>> {
    if x.requires_grad() || x.dim() != 4 || kernel != stride || pad != [0, 0] || *dilation != [1, 1] {
        return Ok(None);
    }
    let (n, c, h, w) = x.size4()?;
    let [kh, kw] = *kernel;
    if kh < 1 || kw < 1 || (ceil_mode && (h % kh != 0 || w % kw != 0)) || h < kh || w < kw {
        return Ok(None);
    }
    let (ho, wo) = (h / kh, w / kw);
    let v = x
        .f_narrow(2, 0, ho * kh)?
        .f_narrow(3, 0, wo * kw)?
        .f_reshape([n, c, ho, kh, wo, kw])?;
    // Elementwise maxima of the kh·kw strided views (a strided reduction was slower).
    let mut y: Option<Tensor> = None;
    for i in 0..kh {
        for j in 0..kw {
            let part = v.f_select(5, j)?.f_select(3, i)?;
            y = Some(match y {
                Some(acc) => acc.f_maximum(&part)?,
                None => part,
            });
        }
    }
    Ok(y.map(|t| t.contiguous()))
}

/// Applies asymmetric padding up front when libtorch's symmetric padding can't express it.
fn split_pads(x: &Tensor, p: &Pads, value: f64) -> Result<(Tensor, [i64; 2])> {
    if p[0] == p[2] && p[1] == p[3] {
        Ok((x.shallow_clone(), [p[0], p[1]]))
    } else {
        Ok((x.f_pad([p[1], p[3], p[0], p[2]], "constant", value)?, [0, 0]))
    }
}

pub(super) fn eval_node(
    node: &Node,
    env: &[Option<Tensor>],
    params: &ParamStore,
    x: &Tensor,
    mode: Mode,
) -> Result<Tensor> {
    let inp = |k| input(env, node, k);
    let device = x.device();
    Ok(match &node.op {
        Op::Input => x.shallow_clone(),
        Op::Param(name) => params.get(name)?.shallow_clone(),
        Op::Constant(t) => {
            if t.is_floating_point() {
                t.to_device(device)
            } else {
                t.shallow_clone()
            }
        }
        Op::Normalize { mean, std } => {
            let c = mean.len() as i64;
            let m = Tensor::from_slice(mean)
                .to_kind(Kind::Float)
                .to_device(device)
                .view([1, c, 1, 1]);
            let s = Tensor::from_slice(std)
                .to_kind(Kind::Float)
                .to_device(device)
                .view([1, c, 1, 1]);
            inp(0)?.f_sub(&m)?.f_div(&s)?
        }
        Op::Conv2d {
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
        } => {
            let (xin, pad) = split_pads(inp(0)?, padding, 0.0)?;
            xin.f_conv2d(
                params.get(weight)?,
                opt_param(params, bias)?,
                stride,
                pad,
                dilation,
                *groups,
            )?
        }
        Op::Linear { weight, bias } => inp(0)?.f_linear(params.get(weight)?, opt_param(params, bias)?)?,
        Op::BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            eps,
            momentum,
        } => {
            if mode == Mode::Train {
                if let Some(n) = opt_param(params, num_batches_tracked)? {
                    let _ = tch::no_grad(|| n.shallow_clone().f_add_scalar_(1))?;
                }
            }
            inp(0)?.f_batch_norm(
                opt_param(params, weight)?,
                opt_param(params, bias)?,
                Some(params.get(running_mean)?),
                Some(params.get(running_var)?),
                mode == Mode::Train,
                *momentum,
                *eps,
                true,
            )?
        }
        Op::LayerNorm {
            weight,
            bias,
            eps,
            axis,
        } => {
            let xin = inp(0)?;
            let size = xin.size();
            let ax = norm_axis(*axis, size.len()) as usize;
            xin.f_layer_norm(
                &size[ax..],
                opt_param(params, weight)?,
                opt_param(params, bias)?,
                *eps,
                true,
            )?
        }
        Op::Relu => inp(0)?.f_relu()?,
        Op::Clip { min, max } => match (min, max) {
            (Some(lo), Some(hi)) => inp(0)?.f_clamp(*lo, *hi)?,
            (Some(lo), None) => inp(0)?.f_clamp_min(*lo)?,
            (None, Some(hi)) => inp(0)?.f_clamp_max(*hi)?,
            (None, None) => inp(0)?.shallow_clone(),
        },
        Op::Gelu { tanh } => inp(0)?.f_gelu(if *tanh { "tanh" } else { "none" })?,
        Op::Sigmoid => inp(0)?.f_sigmoid()?,
        Op::Tanh => inp(0)?.f_tanh()?,
        Op::Erf => inp(0)?.f_erf()?,
        Op::Sqrt => inp(0)?.f_sqrt()?,
        Op::Neg => inp(0)?.f_neg()?,
        Op::MaxPool2d {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        } => {
            let (xin, pad) = split_pads(inp(0)?, padding, f64::NEG_INFINITY)?;
            match tiled_max_pool(&xin, kernel, stride, pad, dilation, *ceil_mode)? {
                Some(y) => y,
                None => xin.f_max_pool2d(kernel, stride, pad, dilation, *ceil_mode)?,
            }
        }
        Op::AvgPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
            count_include_pad,
        } => {
            let (xin, pad) = split_pads(inp(0)?, padding, 0.0)?;
            xin.f_avg_pool2d(kernel, stride, pad, *ceil_mode, *count_include_pad, None)?
        }
        Op::GlobalAvgPool => inp(0)?.f_mean_dim([-2i64, -1].as_slice(), true, None::<Kind>)?,
        Op::Flatten { axis } => {
            let xin = inp(0)?;
            let size = xin.size();
            let ax = norm_axis(*axis, size.len()) as usize;
            let outer: i64 = size[..ax].iter().product();
            xin.f_reshape([outer, -1])?
        }
        Op::Reshape => {
            let xin = inp(0)?;
            let size = xin.size();
            let mut shape = to_i64_vec(inp(1)?)?;
            for (i, s) in shape.iter_mut().enumerate() {
                if *s == 0 {
                    *s = *size.get(i).ok_or_else(|| {
                        HartError::Model(format!("node {}: reshape 0 at axis {i} beyond input rank", node.name))
                    })?;
                }
            }
            xin.f_reshape(&shape)?
        }
        Op::Transpose { perm } => inp(0)?.f_permute(perm.as_slice())?,
        Op::Add => inp(0)?.f_add(inp(1)?)?,
        Op::Sub => inp(0)?.f_sub(inp(1)?)?,
        Op::Mul => inp(0)?.f_mul(inp(1)?)?,
        Op::Div => inp(0)?.f_div(inp(1)?)?,
        Op::Pow => inp(0)?.f_pow(inp(1)?)?,
        Op::MatMul => inp(0)?.f_matmul(inp(1)?)?,
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let a = if *trans_a {
                inp(0)?.f_transpose(-2, -1)?
            } else {
                inp(0)?.shallow_clone()
            };
            let b = if *trans_b {
                inp(1)?.f_transpose(-2, -1)?
            } else {
                inp(1)?.shallow_clone()
            };
            let y = a.f_matmul(&b)?.f_mul_scalar(*alpha)?;
            match node.inputs.get(2) {
                Some(_) => y.f_add(&inp(2)?.f_mul_scalar(*beta)?)?,
                None => y,
            }
        }
        Op::Concat { axis } => {
            let xs: Vec<&Tensor> = (0..node.inputs.len()).map(inp).collect::<Result<_>>()?;
            Tensor::f_cat(&xs, *axis)?
        }
        Op::Softmax { axis } => inp(0)?.f_softmax(*axis, None::<Kind>)?,
        Op::ReduceMean { axes, keepdims } => {
            let xin = inp(0)?;
            let axes = match (axes, node.inputs.get(1)) {
                (Some(a), _) => a.clone(),
                (None, Some(_)) => to_i64_vec(inp(1)?)?,
                (None, None) => (0..xin.dim() as i64).collect(),
            };
            xin.f_mean_dim(axes.as_slice(), *keepdims, None::<Kind>)?
        }
        Op::Shape { start, end } => {
            let size = inp(0)?.size();
            let r = size.len() as i64;
            let clamp = |v: i64| norm_axis(v, size.len()).clamp(0, r) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
            Tensor::from_slice(&size[s..e.max(s)])
        }
        Op::Gather { axis } => {
            let data = inp(0)?;
            let idx = inp(1)?.to_kind(Kind::Int64).to_device(data.device());
            let ax = norm_axis(*axis, data.dim());
            let dim_size = data.size()[ax as usize];
            // ONNX allows negative indices; index_select does not.
            let idx = idx.f_remainder(dim_size)?;
            let flat = data.f_index_select(ax, &idx.flatten(0, -1))?;
            let mut shape = data.size();
            shape.splice(ax as usize..ax as usize + 1, idx.size());
            flat.f_reshape(&shape)?
        }
        Op::Unsqueeze { axes } => {
            let xin = inp(0)?;
            let mut axes = match axes {
                Some(a) => a.clone(),
                None => to_i64_vec(inp(1)?)?,
            };
            let out_rank = xin.dim() + axes.len();
            for a in axes.iter_mut() {
                *a = norm_axis(*a, out_rank);
            }
            axes.sort_unstable();
            let mut y = xin.shallow_clone();
            for a in axes {
                y = y.f_unsqueeze(a)?;
            }
            y
        }
        Op::Squeeze { axes } => {
            let xin = inp(0)?;
            let axes = match (axes, node.inputs.get(1)) {
                (Some(a), _) => a.clone(),
                (None, Some(_)) => to_i64_vec(inp(1)?)?,
                (None, None) => xin
                    .size()
                    .iter()
                    .enumerate()
                    .filter(|(_, &s)| s == 1)
                    .map(|(i, _)| i as i64)
                    .collect(),
            };
            let mut axes: Vec<i64> = axes.iter().map(|&a| norm_axis(a, xin.dim())).collect();
            axes.sort_unstable_by(|a, b| b.cmp(a));
            let mut y = xin.shallow_clone();
            for a in axes {
                y = y.f_squeeze_dim(a)?;
            }
            y
        }
        Op::Slice => {
            let data = inp(0)?;
            let starts = to_i64_vec(inp(1)?)?;
            let ends = to_i64_vec(inp(2)?)?;
            let axes = match node.inputs.get(3) {
                Some(_) => to_i64_vec(inp(3)?)?,
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match node.inputs.get(4) {
                Some(_) => to_i64_vec(inp(4)?)?,
                None => vec![1; starts.len()],
            };
            let mut y = data.shallow_clone();
            for k in 0..starts.len() {
                let ax = norm_axis(axes[k], data.dim());
                let dim = data.size()[ax as usize];
                let clampi = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
                if steps[k] != 1 {
                    return Err(HartError::UnsupportedOp(format!(
                        "Slice with step {} (node {})",
                        steps[k], node.name
                    )));
                }
                let (s, e) = (clampi(starts[k]), clampi(ends[k]));
                y = y.f_narrow(ax, s, (e - s).max(0))?;
            }
            y
        }
        Op::Expand => {
            let xin = inp(0)?;
            let shape = to_i64_vec(inp(1)?)?;
            // ONNX Expand broadcasts both ways; a 1 in `shape` keeps the input's size.
            let rank = shape.len().max(xin.dim());
            let mut xs = vec![1i64; rank - xin.dim()];
            xs.extend(xin.size());
            let mut ts = vec![1i64; rank - shape.len()];
            ts.extend(&shape);
            let target: Vec<i64> = xs.iter().zip(&ts).map(|(&a, &b)| a.max(b)).collect();
            xin.f_reshape(&xs)?.f_expand(&target, false)?
        }
        Op::Cast { to } => inp(0)?.f_to_kind(*to)?,
        Op::Identity => inp(0)?.shallow_clone(),
        Op::Dropout { ratio } => match mode {
            Mode::Train => inp(0)?.f_dropout(*ratio, true)?,
            Mode::Eval => inp(0)?.shallow_clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_max_pool_equals_max_pool2d_bit_for_bit() {
        tch::manual_seed(0);
        for (h, w, k, ceil) in [
            (8, 8, 2, false),
            (7, 9, 2, false),
            (9, 9, 3, false),
            (6, 6, 3, true),
            (5, 4, 1, false),
        ] {
            let x = Tensor::randn([3, 4, h, w], (Kind::Float, tch::Device::Cpu));
            let _ = x.get(0).get(1).get(0).get(0).fill_(f64::NAN);
            let _ = x.get(1).get(2).get(1).get(1).fill_(f64::NEG_INFINITY);
            let _ = x.get(2).get(3).fill_(f64::INFINITY);
            let fast = tiled_max_pool(&x, &[k, k], &[k, k], [0, 0], &[1, 1], ceil)
                .unwrap()
                .unwrap();
            let slow = x.max_pool2d([k, k], [k, k], [0, 0], [1, 1], ceil);
            assert_eq!(fast.size(), slow.size(), "{h}x{w} k{k}");
            let same = fast
                .eq_tensor(&slow)
                .logical_or(&fast.isnan().logical_and(&slow.isnan()));
            assert!(same.all().int64_value(&[]) == 1, "{h}x{w} k{k} differs");
        }
        // Overlapping windows, padding and autograd keep libtorch's kernel.
        let x = Tensor::randn([1, 1, 6, 6], (Kind::Float, tch::Device::Cpu));
        assert!(tiled_max_pool(&x, &[3, 3], &[2, 2], [0, 0], &[1, 1], false)
            .unwrap()
            .is_none());
        assert!(tiled_max_pool(&x, &[2, 2], &[2, 2], [1, 1], &[1, 1], false)
            .unwrap()
            .is_none());
        let g = x.set_requires_grad(true);
        assert!(tiled_max_pool(&g, &[2, 2], &[2, 2], [0, 0], &[1, 1], false)
            .unwrap()
            .is_none());
    }
}
