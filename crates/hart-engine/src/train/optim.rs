//! The optimisers of `hart train`, with PyTorch's update rules (so results
//! compare with a PyTorch script using torch.optim defaults).

use std::str::FromStr;

use tch::Tensor;

use crate::error::HartError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    RmsProp,
}

impl FromStr for OptimizerKind {
    type Err = HartError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_lowercase().as_str() {
            "sgd" => Ok(Self::Sgd),
            "adam" => Ok(Self::Adam),
            "rmsprop" => Ok(Self::RmsProp),
            _ => Err(HartError::Invalid(format!(
                "unknown optimizer {s:?} (sgd, adam, rmsprop)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// Per-parameter state: momentum/first moment and second moment buffers.
pub struct Optimizer {
    cfg: OptimizerConfig,
    params: Vec<Tensor>,
    first: Vec<Option<Tensor>>,
    second: Vec<Option<Tensor>>,
    step: i64,
}

const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const RMSPROP_ALPHA: f64 = 0.99;
const EPS: f64 = 1e-8;

impl Optimizer {
    pub fn new(params: Vec<Tensor>, cfg: OptimizerConfig) -> Self {
        let n = params.len();
        Optimizer {
            cfg,
            params,
            first: (0..n).map(|_| None).collect(),
            second: (0..n).map(|_| None).collect(),
            step: 0,
        }
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales the stored gradients so their joint L2 norm is at most `max`
    /// (torch.nn.utils.clip_grad_norm_'s rule); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> crate::error::Result<f64> {
        let grads: Vec<Tensor> = self.params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        let mut sq = 0.0;
        for g in &grads {
            sq += g.f_square()?.f_sum(tch::Kind::Double)?.f_double_value(&[])?;
        }
        let norm = sq.sqrt();
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| -> crate::error::Result<()> {
                for g in &grads {
                    let _ = g.shallow_clone().f_mul_scalar_(coef)?;
                }
                Ok(())
            })?;
        }
        Ok(norm)
    }

    /// Applies one update from the gradients currently stored on the parameters.
    pub fn step(&mut self) {
        self.step += 1;
        let c = self.cfg;
        tch::no_grad(|| {
            for i in 0..self.params.len() {
                let p = &self.params[i];
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if c.weight_decay != 0.0 {
                    &g + p * c.weight_decay
                } else {
                    g
                };
                let update = match c.kind {
                    OptimizerKind::Sgd => {
                        if c.momentum != 0.0 {
                            let buf = match self.first[i].take() {
                                Some(b) => b * c.momentum + &g,
                                None => g.copy(),
                            };
                            self.first[i] = Some(buf.shallow_clone());
                            buf
                        } else {
                            g
                        }
                    }
                    OptimizerKind::Adam => {
                        let (b1, b2) = ADAM_BETAS;
                        let m = self.first[i].take().unwrap_or_else(|| g.zeros_like()) * b1 + &g * (1.0 - b1);
                        let v = self.second[i].take().unwrap_or_else(|| g.zeros_like()) * b2 + (&g * &g) * (1.0 - b2);
                        let mhat = &m / (1.0 - b1.powi(self.step as i32));
                        let vhat = &v / (1.0 - b2.powi(self.step as i32));
                        self.first[i] = Some(m);
                        self.second[i] = Some(v);
                        mhat / (vhat.sqrt() + EPS)
                    }
                    OptimizerKind::RmsProp => {
                        let a = RMSPROP_ALPHA;
                        let sq = self.second[i].take().unwrap_or_else(|| g.zeros_like()) * a + (&g * &g) * (1.0 - a);
                        let scaled = &g / (sq.sqrt() + EPS);
                        self.second[i] = Some(sq);
                        if c.momentum != 0.0 {
                            let buf = match self.first[i].take() {
                                Some(b) => b * c.momentum + scaled,
                                None => scaled,
                            };
                            self.first[i] = Some(buf.shallow_clone());
                            buf
                        } else {
                            scaled
                        }
                    }
                };
                let _ = p.shallow_clone().f_sub_(&(update * c.lr));
            }
        });
    }
}
