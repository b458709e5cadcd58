//! `--freeze REGEX`: parameters held fixed for a training run. A frozen
//! tensor tracks no gradient, so the optimiser, the regularisers' parameter
//! lists, weight clipping and the noise/bit-error draws (all of which take
//! `Model::trainable()` or filter on `ParamKind::Trainable`) never see it,
//! and its values come out of training bit for bit as they went in.

use regex::Regex;

use super::{Model, ParamKind};
use crate::error::{HartError, Result};

/// How many tensor names an error lists, so a user sees what names exist.
const LISTED: usize = 10;

/// A regex that must match a tensor's whole name (as `--params` does).
pub fn whole_name_regex(option: &str, pattern: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        HartError::Invalid(format!(
            "{option} {pattern:?} is not a valid regex: {}",
            e.to_string().lines().last().unwrap_or("").trim()
        ))
    })
}

/// "a, b, c, … (N in all)": the first names of a list, for error lines.
pub fn name_list(names: &[String]) -> String {
    let shown = names.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > LISTED {
        format!("{shown}, … ({} in all)", names.len())
    } else {
        shown
    }
}

impl Model {
    /// Freezes every trainable tensor whose whole name matches `pattern` and
    /// returns their names. Matching nothing or every trainable tensor is an
    /// error: either is surely not what was meant.
    pub fn freeze(&mut self, pattern: &str) -> Result<Vec<String>> {
        let re = whole_name_regex("--freeze", pattern)?;
        let trainable: Vec<String> = self.trainable().into_iter().map(|(n, _)| n).collect();
        let chosen: Vec<String> = trainable.iter().filter(|n| re.is_match(n)).cloned().collect();
        if chosen.is_empty() {
            return Err(HartError::Invalid(format!(
                "--freeze {pattern:?} matches no trainable tensor (the whole name must match, e.g. '.*weight'); the model's are: {}",
                name_list(&trainable)
            )));
        }
        if chosen.len() == trainable.len() {
            return Err(HartError::Invalid(format!(
                "--freeze {pattern:?} matches all {} trainable tensors: nothing would train",
                trainable.len()
            )));
        }
        for name in &chosen {
            self.set_frozen(name, true)?;
        }
        Ok(chosen)
    }

    /// Frees every frozen tensor again (after training, before measuring).
    pub fn unfreeze(&mut self) -> Result<()> {
        let frozen: Vec<String> = self
            .named_tensors()
            .into_iter()
            .filter(|(_, _, k)| *k == ParamKind::Frozen)
            .map(|(n, _, _)| n)
            .collect();
        for name in &frozen {
            self.set_frozen(name, false)?;
        }
        Ok(())
    }

    fn set_frozen(&mut self, name: &str, frozen: bool) -> Result<()> {
        match self {
            Model::Graph(g) => g.params.set_frozen(name, frozen),
            Model::Script(s) => s.set_frozen(name, frozen),
        }
    }
}
