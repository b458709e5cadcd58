//! HART's optimisers follow torch.optim's update rules step for step.

mod common;

use common::{get, max_abs_diff, read_tensors, run_python};
use hart::train::{Optimizer, OptimizerConfig, OptimizerKind};

#[test]
fn optimisers_match_torch_optim() {
    let dir = tempfile::tempdir().unwrap();
    run_python("optim_reference.py", &[dir.path()]);
    let t = read_tensors(&dir.path().join("optim.safetensors"));
    let cases = [
        ("sgd", OptimizerKind::Sgd, 0.1, 0.9, 0.01),
        ("sgd_plain", OptimizerKind::Sgd, 0.1, 0.0, 0.0),
        ("adam", OptimizerKind::Adam, 0.01, 0.0, 0.01),
        ("rmsprop", OptimizerKind::RmsProp, 0.01, 0.5, 0.01),
        ("rmsprop_plain", OptimizerKind::RmsProp, 0.01, 0.0, 0.0),
    ];
    for (name, kind, lr, momentum, weight_decay) in cases {
        let p = get(&t, "p0").copy().set_requires_grad(true);
        let cfg = OptimizerConfig {
            kind,
            lr,
            momentum,
            weight_decay,
        };
        let mut opt = Optimizer::new(vec![p.shallow_clone()], cfg);
        for i in 0..4 {
            opt.zero_grad();
            // Stand-in loss whose gradient is exactly the reference gradient.
            (&p * get(&t, &format!("grad{i}"))).sum(tch::Kind::Float).backward();
            opt.step();
            let d = max_abs_diff(&p.detach(), get(&t, &format!("{name}.step{i}")));
            assert!(d < 1e-6, "{name} step {i}: differs from torch.optim by {d}");
        }
    }
}
