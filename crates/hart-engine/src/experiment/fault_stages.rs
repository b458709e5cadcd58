//! The fault stages of `[attack]`, `[defense]` and `[campaign]`, each cached
//! per trained model like the analyses, and run through the same engine
//! calls as `hart attack` and `hart campaign` so their numbers agree.

use serde_json::Value;

use super::run::{Runner, TrainedModel};
use super::stages::open;
use crate::attack::{output, Attack, AttackConfig};
use crate::campaign::{self, CampaignConfig};
use crate::data::{self, Split};
use crate::error::{HartError, Result};
use crate::faults::{Defense, Format};

/// Images per forward pass, as the CLI's `--batch-size` default.
const BATCH: usize = 1000;

fn json(v: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| HartError::Invalid(e.to_string()))
}

impl Runner<'_> {
    /// Per attack method, its summary (as `hart attack`'s summary.json);
    /// the model's seed seeds the attack, so recipes are paired by seed.
    pub fn attacks(&mut self, m: &TrainedModel) -> Result<Vec<(String, Value)>> {
        let Some(a) = self.cfg.attack.clone() else {
            return Ok(vec![]);
        };
        let eval = self.test_prefix(a.eval_limit)?;
        // `hart attack --limit N` reads the first 10·N training images.
        let spec = self.spec(Split::Train, Some(10 * a.limit));
        let device = self.device;
        let mut out = vec![];
        for method in a.methods() {
            // Keyed per method, so adding "both" reuses a finished bfa stage.
            let mut settings = json(&a)?;
            settings["method"] = Value::from(method.to_string());
            let key = self.key(m, "attack", settings);
            let stage = format!("attack[{method}]");
            self.bar
                .set_message(format!("{stage} {}/{}/seed{}", m.arch, m.recipe, m.seed));
            let (summary, _, outcome) = self.cache.stage("attack", &key, |dir| {
                let model = open(m, device)?;
                let train = data::load(&spec)?;
                let cfg = AttackConfig {
                    method,
                    storage: a.storage(),
                    per_channel: false,
                    defense: Defense::None,
                    max_flips: a.max_flips,
                    target: a.target_accuracy,
                    top_k: a.top_k,
                    trials: a.trials,
                    seed: m.seed,
                    attack_images: a.limit,
                    batch: BATCH,
                };
                let attack = Attack::new(&model, &train, &eval, cfg)?;
                let trials = attack.run(&mut |_| {})?;
                let summary = output::summarize(&attack, &trials);
                output::write(&dir.join("attack"), &attack, &trials, &summary)?;
                json(&summary)
            })?;
            self.note(&stage, m, outcome);
            out.push((method.to_string(), summary));
        }
        Ok(out)
    }

    /// Per `[defense]` entry, the sweep's summary under that defence.
    pub fn defended_sweeps(&mut self, m: &TrainedModel) -> Result<Vec<(String, Value)>> {
        let defenses = self.cfg.defense.as_ref().map(|d| d.defenses()).unwrap_or_default();
        defenses
            .into_iter()
            .map(|d| Ok((d.to_string(), self.sweep_under(m, d)?)))
            .collect()
    }

    /// The `[campaign]`'s summary (as `hart campaign`'s summary.json); the
    /// model's seed draws the faults, so recipes with one seed meet the same faults.
    pub fn campaign(&mut self, m: &TrainedModel) -> Result<Option<campaign::run::Summary>> {
        let Some(c) = self.cfg.campaign.clone() else {
            return Ok(None);
        };
        let data = self.test_prefix(c.limit)?;
        let threshold = self.cfg.sweep.threshold;
        let key = self.key(
            m,
            "campaign",
            serde_json::json!({"campaign": c, "threshold": threshold}),
        );
        let device = self.device;
        self.bar
            .set_message(format!("campaign {}/{}/seed{}", m.arch, m.recipe, m.seed));
        let (summary, _, outcome) = self.cache.stage("campaign", &key, |dir| {
            let model = open(m, device)?;
            let cfg = CampaignConfig {
                trials: c.trials,
                seed: m.seed,
                storage: c.storage(),
                threshold,
                batch: BATCH,
                ..CampaignConfig::new(c.fault(), c.levels.clone())
            };
            let run = campaign::prepare(&model, &data, &cfg)?;
            let out = dir.join("campaign");
            run.run(&out, &mut |_| {})?;
            run.finish(&out, Format::Parquet)
        })?;
        self.note("campaign", m, outcome);
        Ok(Some(summary))
    }
}
