//! Structured deltas at the first affected node: a flip of linear weight
//! [o, i] moves only output unit o by δ·x[i]; a flip of conv weight
//! [co, ci, kh, kw] moves only output channel co by δ times the shifted input
//! patch; a bias moves only its channel by δ. From these come the faulty
//! output of many (flip, sample) pairs at once and each element's
//! per-sample sensitivity `A` (the bound's factor for |δ|).

use tch::{Device, Kind, Tensor};

use crate::error::{HartError, Result};
use crate::model::graph::{Op, Pads};

#[derive(Debug, Clone)]
pub enum Delta {
    /// Weight of a linear layer on 2-D input `[N, in]`.
    LinearWeight { input: usize, in_features: i64 },
    /// Weight of a convolution: shape `[co, ci/groups, kh, kw]`.
    ConvWeight {
        input: usize,
        shape: [i64; 4],
        stride: [i64; 2],
        padding: Pads,
        dilation: [i64; 2],
        groups: i64,
    },
    /// Bias of a conv or 2-D linear layer: channel dimension 1.
    Bias,
    /// Anything else: node `c` is re-run per flip with the flip applied.
    Recompute,
}

/// The delta rule for tensor `param` read by `op`, given the clean value
/// ranks (`rank_of(v)`) of the graph's values.
pub fn delta_kind(
    op: &Op,
    inputs: &[usize],
    param: &str,
    out_rank: usize,
    rank_of: impl Fn(usize) -> usize,
    shape: &[i64],
) -> Delta {
    match op {
        Op::Linear { weight, bias } if out_rank == 2 && rank_of(inputs[0]) == 2 => {
            if weight == param {
                Delta::LinearWeight {
                    input: inputs[0],
                    in_features: shape[1],
                }
            } else if bias.as_deref() == Some(param) {
                Delta::Bias
            } else {
                Delta::Recompute
            }
        }
        Op::Conv2d {
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
        } => {
            if weight == param && shape.len() == 4 {
                Delta::ConvWeight {
                    input: inputs[0],
                    shape: [shape[0], shape[1], shape[2], shape[3]],
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                    groups: *groups,
                }
            } else if bias.as_deref() == Some(param) {
                Delta::Bias
            } else {
                Delta::Recompute
            }
        }
        _ => Delta::Recompute,
    }
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

pub fn pad(x: &Tensor, p: &Pads) -> Result<Tensor> {
    pad_with(x, p, 0.0)
}

/// `x` padded by `p` ([top, left, bottom, right]) with `fill`.
pub fn pad_with(x: &Tensor, p: &Pads, fill: f64) -> Result<Tensor> {
    Ok(x.f_pad([p[1], p[3], p[0], p[2]], "constant", fill)?)
}

/// Conv weight element → (output channel, input channel of the layer input, kh, kw).
fn conv_coords(shape: &[i64; 4], groups: i64, e: i64) -> (i64, i64, i64, i64) {
    let [co_n, ci_n, kh_n, kw_n] = *shape;
    let kw = e % kw_n;
    let kh = (e / kw_n) % kh_n;
    let ci = (e / (kw_n * kh_n)) % ci_n;
    let co = e / (kw_n * kh_n * ci_n);
    let group = co / (co_n / groups.max(1));
    (co, group * ci_n + ci, kh, kw)
}

impl Delta {
    pub fn structured(&self) -> bool {
        !matches!(self, Delta::Recompute)
    }

    /// `A[e, s]` for `elements` on the chunk's samples: the bound on
    /// `Σ g·|Δout|` per unit |δ|. `g` is the sensitivity at the node's output
    /// (batch dimension 1); `env` the chunk's cached values.
    pub fn sensitivity(
        &self,
        g: &Tensor,
        env: &[Option<Tensor>],
        elements: &[i64],
        samples: i64,
    ) -> Result<Option<Tensor>> {
        let e = i64s(elements);
        Ok(match self {
            Delta::LinearWeight { input, in_features } => {
                let Some(x) = env[*input].as_ref() else { return Ok(None) };
                let (o, i) = (e.divide_scalar_mode(*in_features, "floor"), e.remainder(*in_features));
                let gx = g.f_flatten(0, -1)?.f_index_select(0, &o)?;
                Some(x.abs().f_index_select(1, &i)?.tr() * gx.unsqueeze(1))
            }
            Delta::Bias => {
                let per_channel = g
                    .f_sum_dim_intlist(reduce_all_but_1(g), false, Kind::Float)?
                    .f_flatten(0, -1)?;
                Some(
                    per_channel
                        .f_index_select(0, &e)?
                        .unsqueeze(1)
                        .expand([elements.len() as i64, samples], false),
                )
            }
            Delta::ConvWeight {
                input,
                shape,
                stride,
                padding,
                dilation,
                groups,
            } => {
                let Some(x) = env[*input].as_ref() else { return Ok(None) };
                let coords: Vec<_> = elements.iter().map(|&e| conv_coords(shape, *groups, e)).collect();
                let mut cos: Vec<i64> = coords.iter().map(|c| c.0).collect();
                cos.sort_unstable();
                cos.dedup();
                // A[s, ch, co, kh, kw] = Σ_{y,x} g[co,y,x]·|xpad[s, ch, kh·d + y·s, kw·d + x·s]|:
                // a convolution of |x| (channels as batch) with g as the kernel,
                // stride and dilation swapped.
                let xp = pad(&x.abs(), padding)?;
                let (s, ch, hp, wp) = xp.size4()?;
                let kernel = g.f_index_select(1, &i64s(&cos))?.f_transpose(0, 1)?; // [n_co, 1, Ho, Wo]
                let a = xp
                    .f_reshape([s * ch, 1, hp, wp])?
                    .f_conv2d(&kernel, None::<Tensor>, *dilation, [0, 0], *stride, 1)?
                    .f_narrow(2, 0, shape[2])?
                    .f_narrow(3, 0, shape[3])?
                    .f_reshape([s, ch, cos.len() as i64, shape[2], shape[3]])?;
                let idx: Vec<i64> = coords
                    .iter()
                    .map(|&(co, chn, kh, kw)| {
                        let co_pos = cos.binary_search(&co).unwrap_or(0) as i64;
                        ((chn * cos.len() as i64 + co_pos) * shape[2] + kh) * shape[3] + kw
                    })
                    .collect();
                Some(a.f_reshape([s, -1])?.f_index_select(1, &i64s(&idx))?.tr())
            }
            Delta::Recompute => None,
        })
    }

    /// The output channel (conv) or unit (linear) a flip of element `e` moves.
    pub fn channel(&self, e: i64) -> i64 {
        match self {
            Delta::LinearWeight { in_features, .. } => e / in_features,
            Delta::ConvWeight { shape, groups, .. } => conv_coords(shape, *groups, e).0,
            Delta::Bias | Delta::Recompute => e,
        }
    }

    /// The change of each pair's moved channel, `[P, 1, …]` like one
    /// channel of node `c`'s output (`out_shape`, batch dimension ignored).
    /// `env` holds the chunk's cached values, `samples` each pair's row in
    /// them, `elements`/`deltas` the flipped element and new−old of each
    /// pair's flip. Inputs are read element by element at flat offsets, never
    /// gathered whole: a conv flip needs only one shifted patch of one channel.
    pub fn change(
        &self,
        out_shape: &[i64],
        env: &[Option<Tensor>],
        samples: &Tensor,
        elements: &[i64],
        deltas: &[f32],
    ) -> Result<Tensor> {
        let p = elements.len() as i64;
        let e = i64s(elements);
        let mut slice: Vec<i64> = out_shape.to_vec();
        slice[0] = p;
        slice[1] = 1;
        let dev = samples.device();
        let d = Tensor::from_slice(deltas).to_device(dev);
        let s = samples.to_device(Device::Cpu);
        Ok(match self {
            Delta::LinearWeight { input, in_features } => {
                let x = gathered(env, *input)?;
                let offsets = (s * *in_features + e.remainder(*in_features)).to_device(x.device());
                (x.f_reshape([-1])?.f_index_select(0, &offsets)? * &d).view([p, 1])
            }
            Delta::Bias => {
                let ones = vec![1i64; slice.len() - 1];
                d.view([&[p][..], &ones].concat().as_slice())
                    .expand(slice.as_slice(), false)
            }
            Delta::ConvWeight {
                input,
                shape,
                stride,
                padding,
                dilation,
                groups,
            } => {
                let x = gathered(env, *input)?;
                let (_, cin, h, w) = x.size4()?;
                let (ho, wo) = (out_shape[2], out_shape[3]);
                let coords: Vec<_> = elements.iter().map(|&e| conv_coords(shape, *groups, e)).collect();
                let col = |f: fn(&(i64, i64, i64, i64)) -> i64| i64s(&coords.iter().map(f).collect::<Vec<_>>());
                let (ch, kh, kw) = (col(|c| c.1), col(|c| c.2), col(|c| c.3));
                let cpu = (Kind::Int64, Device::Cpu);
                // Input rows/columns each output position reads, before padding.
                let rows = (kh * dilation[0] - padding[0]).view([p, 1, 1])
                    + (Tensor::arange(ho, cpu) * stride[0]).view([1, ho, 1]);
                let cols = (kw * dilation[1] - padding[1]).view([p, 1, 1])
                    + (Tensor::arange(wo, cpu) * stride[1]).view([1, 1, wo]);
                let padded = padding.iter().any(|&q| q != 0);
                let (r, c) = if padded {
                    (rows.clamp(0, h - 1), cols.clamp(0, w - 1))
                } else {
                    (rows.shallow_clone(), cols.shallow_clone())
                };
                let offsets = ((s * cin + ch).view([p, 1, 1]) * h + r) * w + c;
                let mut patch = x
                    .f_reshape([-1])?
                    .f_index_select(0, &offsets.view([-1]).to_device(x.device()))?
                    .f_view([p, ho, wo])?;
                if padded {
                    // Zero padding reads zeros (also where the input holds Inf or NaN).
                    let inside = rows
                        .ge(0)
                        .logical_and(&rows.lt(h))
                        .logical_and(&cols.ge(0).logical_and(&cols.lt(w)));
                    patch = patch.f_where_self(&inside.to_device(x.device()), &patch.zeros_like())?;
                }
                (patch * d.view([p, 1, 1])).view([p, 1, ho, wo])
            }
            Delta::Recompute => return Err(HartError::Model("recomputed flips have no structured delta".into())),
        })
    }

    /// Faulty outputs of node `c` for pairs: `clean` is its clean output
    /// gathered per pair; the rest as for [`Delta::change`].
    pub fn apply(
        &self,
        clean: &Tensor,
        env: &[Option<Tensor>],
        samples: &Tensor,
        elements: &[i64],
        deltas: &[f32],
    ) -> Result<Tensor> {
        let change = self.change(&clean.size(), env, samples, elements, deltas)?;
        let channels: Vec<i64> = elements.iter().map(|&e| self.channel(e)).collect();
        let out = clean.copy();
        add_to_channel(&out, &channels, &change)?;
        Ok(out)
    }
}

/// `out[p, channels[p], …] += change[p, 0, …]`.
pub fn add_to_channel(out: &Tensor, channels: &[i64], change: &Tensor) -> Result<()> {
    let size = out.size();
    let p = size[0];
    let rest: i64 = size[2..].iter().product();
    let mut view = out.f_view([p, size[1], rest])?;
    let idx = i64s(channels)
        .to_device(out.device())
        .view([p, 1, 1])
        .expand([p, 1, rest], false);
    let _ = view.f_scatter_add_(1, &idx, &change.f_reshape([p, 1, rest])?)?;
    Ok(())
}

fn reduce_all_but_1(g: &Tensor) -> Vec<i64> {
    (0..g.dim() as i64).filter(|&d| d != 1).collect()
}

fn gathered(env: &[Option<Tensor>], v: usize) -> Result<&Tensor> {
    env[v]
        .as_ref()
        .ok_or_else(|| HartError::Model(format!("fast engine: value {v} was not gathered")))
}
