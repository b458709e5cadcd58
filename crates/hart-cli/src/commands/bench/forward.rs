//! `hart bench forward`: the graph executor against the same LeNet-5 written
//! as direct tch calls — the price of running models as inspectable graphs.

use anyhow::Result;
use hart::bench::{time, Comparison};
use hart::model::{zoo, GraphModel, Mode, ModelInfo};
use tch::{Kind, Tensor};

/// LeNet-5 exactly as a PyTorch user would write it, reading HART's parameters.
fn lenet5_direct(m: &GraphModel, x: &Tensor) -> Result<Tensor> {
    let p = |n: &str| m.params.get(n);
    let n = m
        .info
        .normalize
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("bench model lacks normalisation"))?;
    let x = (x - n.mean[0]) / n.std[0];
    let x = x
        .conv2d(p("conv1.weight")?, Some(p("conv1.bias")?), [1, 1], [2, 2], [1, 1], 1)
        .relu()
        .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
    let x = x
        .conv2d(p("conv2.weight")?, Some(p("conv2.bias")?), [1, 1], [0, 0], [1, 1], 1)
        .relu()
        .max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
        .flatten(1, -1);
    let x = x.linear(p("fc1.weight")?, Some(p("fc1.bias")?)).relu();
    let x = x.linear(p("fc2.weight")?, Some(p("fc2.bias")?)).relu();
    Ok(x.linear(p("fc3.weight")?, Some(p("fc3.bias")?)))
}

pub fn run(batch: i64, runs: usize) -> Result<Vec<Comparison>> {
    tch::manual_seed(0);
    let info = ModelInfo::fashion_mnist("lenet5");
    let m = zoo::build(&info)?;
    let x = Tensor::rand([batch, 1, 28, 28], (Kind::Float, tch::Device::Cpu));
    let y = Tensor::randint(10, [batch], (Kind::Int64, tch::Device::Cpu));
    // Same weights, same input: the two paths must agree before timing means anything.
    let diff = tch::no_grad(|| -> Result<f64> {
        let a = m.forward(&x, Mode::Eval)?;
        let b = lenet5_direct(&m, &x)?;
        Ok((a - b).abs().max().double_value(&[]))
    })?;
    anyhow::ensure!(diff < 1e-5, "graph and direct LeNet-5 disagree by {diff}");
    let infer = Comparison::new(
        "lenet5 inference",
        time("direct", runs, || {
            tch::no_grad(|| lenet5_direct(&m, &x).map(|_| ())).expect("direct forward");
        }),
        time("graph", runs, || {
            tch::no_grad(|| m.forward(&x, Mode::Eval).map(|_| ())).expect("graph forward");
        }),
    );
    let grad_step = |logits: Tensor| {
        logits.cross_entropy_for_logits(&y).backward();
    };
    let train = Comparison::new(
        "lenet5 forward+backward",
        time("direct", runs, || {
            grad_step(lenet5_direct(&m, &x).expect("direct forward"))
        }),
        time("graph", runs, || {
            grad_step(m.forward(&x, Mode::Train).expect("graph forward"))
        }),
    );
    Ok(vec![infer, train])
}
