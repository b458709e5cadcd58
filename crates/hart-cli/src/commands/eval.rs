//! `hart eval`: accuracy of any model HART loads.

use anyhow::Result;
use clap::Args;
use hart::data::Split;
use hart::eval::{evaluate_with, NanPolicy};

use super::common::{parse_device, DataArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: Split,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// How a sample whose logits hold a NaN counts: wrong (HART's rule) or argmax (torch.argmax's: the first NaN's index is the prediction).
    #[arg(long, default_value = "wrong")]
    pub nan_policy: NanPolicy,
    /// Print {"accuracy", "correct", "total"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let data = a.data.load(a.split)?;
    let model = a.model.load(&data, device)?;
    let r = evaluate_with(&model, &data, a.batch_size, device, a.nan_policy)?;
    if a.json {
        println!("{}", serde_json::json!(r));
    } else {
        println!(
            "{} on {} ({}): accuracy {:.2}% ({}/{}), loss {:.4}",
            a.model.model.display(),
            data.name,
            a.split,
            100.0 * r.accuracy,
            r.correct,
            r.total,
            r.loss
        );
    }
    Ok(())
}
